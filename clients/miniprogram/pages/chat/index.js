// One conversation: bubbles with the seed's time separators (60 s `flagtime`), pending and
// failed sends (tap a failed one to resend it with the same client_msg_id), images from their
// thumbnails, videos with their poster, "typing…", read marks and recall (long-press your own
// message). Opened with ?peer=<account>&name=<display name>&read=<peer_read_id>.
const view = require('../../view');
const { newId } = require('../../chat');

const TYPING_SHOWN_MS = 3000;
const decode = (s) => { try { return decodeURIComponent(s); } catch (e) { return s; } };

Page({
  data: { items: [], hasMore: false, typing: false, draft: '', bottom: '', status: '' },

  onLoad(query) {
    this.chat = getApp().chat;
    this.me = this.chat.userphone;
    this.peer = decode(query.peer);
    this.peerReadId = query.read ? decode(query.read) : null;
    this.conv = { rows: [], cursor: null, hasMore: false };
    this.outgoing = {}; // clientMsgId -> what to resend: {kind, payload}
    this.broken = {}; // bubble keys whose thumbnail failed to load
    this.visible = true;
    wx.setNavigationBarTitle({ title: query.name ? decode(query.name) : this.peer });
    const on = (event, fn) => this.chat.on(event, (ev) => { if (ev && ev.peer === this.peer) fn.call(this, ev); });
    this.offs = [
      on('history', (ev) => { this.conv = view.applyHistory(this.conv, ev); this.render(!ev.before); this.readAll(); }),
      on('message', (ev) => { this.conv = view.applyMessage(this.conv, ev); this.render(true); this.readAll(); }),
      on('recall', (ev) => { this.conv.rows = view.applyRecall(this.conv.rows, ev.id); this.render(); }),
      // Taken down: its picture is gone for good, so no fallback to the original either.
      on('blocked', (ev) => { delete this.broken[ev.id]; this.conv.rows = view.applyBlocked(this.conv.rows, ev.id); this.render(); }),
      on('read', (ev) => { if (!this.peerReadId || ev.id > this.peerReadId) this.peerReadId = ev.id; this.render(); }),
      on('typing', () => this.showTyping()),
      on('conversation', (entry) => { if (entry.peer_read_id && (!this.peerReadId || entry.peer_read_id > this.peerReadId)) { this.peerReadId = entry.peer_read_id; this.render(); } }),
    ];
    this.offs.push(this.chat.on('state', (s) => this.setData({ status: s.state === 'open' ? '' : view.TEXT.offline })));
    // The latest page; this also makes it the conversation the client resyncs after reconnects.
    this.chat.history(this.peer).catch((e) => wx.showToast({ title: view.errorText(e), icon: 'none' }));
  },

  onShow() { this.visible = true; this.readAll(); },
  onHide() { this.visible = false; },

  onUnload() {
    this.offs.forEach((off) => off());
    this.chat.closeConversation(this.peer);
    clearTimeout(this.typingTimer);
  },

  render(toBottom) {
    const items = view.chatItems(this.conv.rows, { me: this.me, peerReadId: this.peerReadId, broken: this.broken });
    const data = { items, hasMore: this.conv.hasMore };
    if (toBottom && items.length) data.bottom = 'r' + (items.length - 1);
    this.setData(data);
  },

  // Everything on screen from the peer is read.
  readAll() {
    if (!this.visible) return;
    const newest = view.newestFrom(this.conv.rows, this.peer);
    if (newest) this.chat.markRead(this.peer, newest.id).catch(() => {});
  },

  showTyping() {
    this.setData({ typing: true });
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.setData({ typing: false }), TYPING_SHOWN_MS);
  },

  older() {
    if (this.conv.hasMore && !this.loadingOlder) {
      this.loadingOlder = true;
      const done = () => { this.loadingOlder = false; };
      this.chat.history(this.peer, { before: this.conv.cursor }).then(done, done);
    }
  },

  onInput(e) {
    this.setData({ draft: e.detail.value });
    if (e.detail.value) this.chat.typing(this.peer);
  },

  onSend() {
    const text = this.data.draft;
    if (!text.trim()) return;
    this.setData({ draft: '' });
    // An edit of a text content security refused goes with that text's client_msg_id.
    const editing = this.editing && this.outgoing[this.editing] ? this.editing : null;
    this.editing = null;
    // After the user's first message in this conversation, ask (in this tap, as WeChat
    // requires) whether they want a notice when a reply comes while they are away.
    const first = !this.conv.rows.some((r) => r.userphone === this.me);
    if (first && !editing && this.chat.opts.noticeTemplateId) {
      this.chat.requestNotices().then(null, () => {});
    }
    this.send({ kind: 0, payload: text }, editing || undefined);
  },

  onPick() {
    wx.chooseMedia({
      count: 1,
      mediaType: ['image', 'video'],
      sizeType: ['compressed'],
      success: ({ tempFiles }) => tempFiles.forEach((f) => this.send({ kind: f.fileType === 'video' ? 2 : 1, payload: f })),
    });
  },

  // Shows the message as pending, sends it, then shows the stored row or the failure.
  send(out, clientMsgId) {
    const id = clientMsgId || newId('m');
    this.outgoing[id] = out;
    const f = out.payload;
    if (clientMsgId) {
      this.conv.rows = view.setFailed(this.conv.rows, id, false, null, out.kind === 0 ? f : undefined);
    } else {
      this.conv.rows = this.conv.rows.concat([view.pendingRow({
        clientMsgId: id, me: this.me, peer: this.peer, chatType: out.kind, now: Date.now(),
        content: out.kind === 0 ? f : '', localPath: out.kind ? f.tempFilePath : null, posterPath: f.thumbTempFilePath,
      })]);
    }
    this.render(true);
    const opts = { clientMsgId: id };
    const sending = out.kind === 0 ? this.chat.sendText(this.peer, f, opts)
      : out.kind === 1 ? this.chat.sendImage(this.peer, f, opts) : this.chat.sendVideo(this.peer, f, opts);
    sending.then((row) => {
      delete this.outgoing[id];
      this.conv = view.applyMessage(this.conv, { message: row });
      this.render();
    }, (err) => {
      this.conv.rows = view.setFailed(this.conv.rows, id, true, err);
      this.render();
      wx.showToast({ title: view.errorText(err, out.kind), icon: 'none' });
    });
  },

  onBubbleTap(e) {
    const d = e.currentTarget.dataset;
    if (d.status === 'failed' && this.outgoing[d.cid]) return this.send(this.outgoing[d.cid], d.cid);
    // Refused by content security: the text goes back to the input; the next send carries the
    // edit with the same client_msg_id (the server did not use it up).
    if (d.status === 'blocked' && this.outgoing[d.cid]) {
      this.editing = d.cid;
      this.setData({ draft: this.outgoing[d.cid].payload });
      return undefined;
    }
    if (d.kind === 'image') wx.previewImage({ urls: [d.url], current: d.url });
    else if (d.kind === 'video') wx.previewMedia({ sources: [{ url: d.url, type: 'video', poster: d.poster }] });
    return undefined;
  },

  onLongPress(e) {
    const d = e.currentTarget.dataset;
    if (!d.mine || !d.id) return;
    wx.showActionSheet({
      itemList: ['撤回'],
      success: ({ tapIndex }) => {
        if (tapIndex === 0) this.chat.recall(this.peer, d.id).catch((err) => wx.showToast({ title: view.errorText(err), icon: 'none' }));
      },
    });
  },

  // A thumbnail answers 404 until the thumbnail function wrote it: show the original.
  onImageError(e) {
    const key = e.currentTarget.dataset.key;
    if (this.broken[key]) return;
    this.broken[key] = true;
    this.render();
  },
});
