// A WeChat mini-program page talking to the chat (docs/protocol.md). Compared with a client of
// the seed's express-ws server, three things change:
//   1. the socket URL (the stack output WebSocketUrl) and a token from your login service;
//   2. one {"action":"sync"} frame after the socket opens (API Gateway cannot push on connect);
//   3. a client_msg_id per message, so that a resend after a timeout is stored once.
// Everything else — the chatInfo frame, the {"code":1,"data":[...]} rows that replace the list,
// created_date, chat_type 0/1/2 — stays as it was.
const WS_URL = 'wss://abcdef1234.execute-api.ap-east-1.amazonaws.com/prod'; // stack output WebSocketUrl

Page({
  data: { list: [], cursor: null, hasMore: false },

  onLoad(query) {
    const app = getApp();
    // app.globalData.chatToken: minted by your login service after wx.login, signed with the
    // secret in the stack output JwtSecretArn (claims: sub, app, exp, name, avatar).
    this.socket = wx.connectSocket({
      url: `${WS_URL}?userphone=${app.globalData.phone}&friendphone=${query.friendphone}` +
           `&app_sid=${app.globalData.appSid}`,
      header: { Authorization: `Bearer ${app.globalData.chatToken}` },
    });
    this.socket.onOpen(() => {
      this.socket.send({ data: JSON.stringify({ action: 'sync', limit: 20 }) });
      // API Gateway closes a connection idle for 10 minutes.
      this.pinger = setInterval(() => this.socket.send({ data: '{"action":"ping"}' }), 5 * 60 * 1000);
    });
    this.socket.onMessage(({ data }) => {
      const frame = JSON.parse(data);
      if (frame.code === 1 && frame.type === 'history') {
        // As in the seed: replace the list (older pages are put in front).
        const list = frame.before ? frame.data.concat(this.data.list) : frame.data;
        this.setData({ list, cursor: frame.cursor, hasMore: frame.has_more });
      } else if (frame.code === 0) {
        wx.showToast({ title: frame.msg, icon: 'none' });
      }
    });
    this.socket.onClose(() => clearInterval(this.pinger)); // reconnect on next show, then sync
  },

  send(e) {
    const msg = {
      action: 'send',
      client_msg_id: `${Date.now()}-${Math.random().toString(36).slice(2)}`,
      chat_type: 0,
      chat_content: e.detail.value,
    };
    this.socket.send({ data: JSON.stringify(msg) });
  },

  onReachTop() {
    if (this.data.hasMore) {
      this.socket.send({ data: JSON.stringify({ action: 'history', before: this.data.cursor, limit: 20 }) });
    }
  },

  onUnload() {
    this.socket.close();
  },
});
