// The conversation list: one row per peer, newest first, with unread badges. Uses the app's
// one ChatClient (getApp().chat, see the README) and view.js for what each row shows.
const view = require('../../view');

Page({
  data: { items: [], status: '', hasMore: false, peerInput: '' },

  onLoad() {
    this.chat = getApp().chat;
    this.me = this.chat.userphone;
    this.list = { list: [], cursor: null, hasMore: false };
    const on = (event, fn) => this.chat.on(event, fn.bind(this));
    this.offs = [
      on('conversations', (ev) => { this.list = view.mergeConversations(this.list, ev); this.render(); }),
      on('conversation', (entry) => this.update(view.applyEntry(this.list.list, entry))),
      on('message', (ev) => this.update(view.applyMessageToList(this.list.list, ev))),
      on('recall', (ev) => this.update(view.applyRecallToList(this.list.list, ev))),
      on('blocked', (ev) => this.update(view.applyBlockedToList(this.list.list, ev))),
      on('read', (ev) => this.update(view.applyReadToList(this.list.list, ev))),
      on('state', (s) => this.setData({ status: s.state === 'open' ? '' : s.state === 'connecting' ? view.TEXT.connecting : view.TEXT.offline })),
    ];
    this.chat.connect();
    this.chat.listConversations().catch(() => {}); // also asked for by the client after each reconnect
  },

  onUnload() {
    this.offs.forEach((off) => off());
  },

  onPullDownRefresh() {
    this.chat.listConversations().then(() => wx.stopPullDownRefresh(), () => wx.stopPullDownRefresh());
  },

  onReachBottom() {
    if (this.list.hasMore) this.chat.listConversations({ before: this.list.cursor }).catch(() => {});
  },

  update(list) {
    this.list = Object.assign({}, this.list, { list });
    this.render();
  },

  render() {
    const ctx = { me: this.me };
    this.setData({ items: this.list.list.map((e) => view.listItemFor(e, ctx)), hasMore: this.list.hasMore });
  },

  open(e) {
    const peer = e.currentTarget.dataset.peer;
    const entry = this.list.list.find((x) => x.peer === peer) || {};
    const q = `peer=${encodeURIComponent(peer)}&name=${encodeURIComponent(entry.peername || peer)}` +
      `&read=${encodeURIComponent(entry.peer_read_id || '')}`;
    wx.navigateTo({ url: `../chat/index?${q}` });
  },

  onPeerInput(e) {
    this.setData({ peerInput: e.detail.value.trim() });
  },

  startChat() {
    const peer = this.data.peerInput;
    if (!peer || peer === this.me) return;
    this.setData({ peerInput: '' });
    wx.navigateTo({ url: `../chat/index?peer=${encodeURIComponent(peer)}&name=${encodeURIComponent(peer)}` });
  },
});
