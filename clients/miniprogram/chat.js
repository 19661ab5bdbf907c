// The chat client of a WeChat mini-program (docs/protocol.md): one user connection carries all
// of the user's conversations. Plain CommonJS, no build step, no async/await or object spread,
// so it runs without the developer tool's "enhanced compile" and under Node for the tests.
//
//   const { ChatClient } = require('./chat')
//   const chat = new ChatClient({ url: 'wss://…/prod', userphone, appSid, token, getToken })
//   chat.on('message', (ev) => …); chat.connect()
//   chat.sendText(peer, 'hi').then((row) => …, (err) => toast(err.code))
//
// What it does for you:
// - one SocketTask from wx.connectSocket (never the global wx.onSocket* handlers), the token
//   in an `Authorization: Bearer` header, userphone and app_sid in the query;
// - a ping every 4 minutes (API Gateway closes a connection idle for 10) and a reconnect when
//   the ping gets no answer; a reconnect before API Gateway's 2-hour limit; otherwise reconnects
//   after a close or an error with exponential backoff and jitter; a fresh token from
//   getToken() once the current one is (about to be) expired or was refused;
// - after every (re)connect: the first page of the conversation list and the open
//   conversation's latest rows, paged back to the newest row seen before, so nothing sent in
//   between is missed;
// - sends carry a client_msg_id, go out one at a time in order, are resent after a reconnect
//   with the same id (the server stores them once) and resolve with the stored row when the
//   `message` frame carrying that id (the acknowledgement) arrives; a refusal rejects with a
//   ChatError whose `code` is the server's error code;
// - images and videos: an upload ticket over the socket, wx.uploadFile to the ticket's POST
//   form, then the send; a file over the server's limit is refused before anything is
//   uploaded (code `media_too_large`);
// - offline notices: requestNotices() (from a tap) asks wx.requestSubscribeMessage for the
//   deployment's template and reports an accept, so a message that comes while the user is
//   away brings a WeChat notice.
(function (root) {
'use strict';

var DEFAULTS = {
  heartbeatMs: 4 * 60 * 1000, // ping when nothing was sent for this long (idle limit: 10 min)
  pongTimeoutMs: 15 * 1000, // no frame this long after a ping: the socket is dead, reconnect
  maxAgeMs: 110 * 60 * 1000, // reconnect before API Gateway's 2-hour limit
  backoff: { baseMs: 1000, maxMs: 30 * 1000, factor: 2 },
  ackTimeoutMs: 15 * 1000, // resend an unacknowledged send on the same socket, then reconnect
  rateLimitedRetryMs: 20 * 1000, // `rate_limited`: try the send again after this
  sendTimeoutMs: 2 * 60 * 1000, // a send not acknowledged by then rejects with `timeout`
  requestTimeoutMs: 30 * 1000, // list, history, read, recall and upload-ticket answers
  uploadTimeoutMs: 2 * 60 * 1000, // wx.uploadFile
  noticeTemplateId: null, // the deployment's NoticeTemplateId: requestNotices() asks for it
  pageLimit: 20,
  resyncLimit: 50, // rows per page when catching up after a reconnect
  resyncMaxPages: 10, // at most this many pages back; beyond, the page starts afresh
  tokenMarginS: 60, // ask getToken() when the token expires within this many seconds
  typingGapMs: 2000, // the server relays one typing frame per 2 s anyway
  quietResyncMs: 60 * 1000, // an open conversation without a frame this long is caught up
  gapWaitMs: 1500, // a `seq` gap not filled by then (frames may overtake) fetches the page
};

var EVENTS = ['state', 'conversations', 'conversation', 'history', 'message', 'read', 'typing', 'recall', 'blocked', 'error'];

var IMAGE_TYPES = { jpg: 'image/jpeg', jpeg: 'image/jpeg', png: 'image/png', gif: 'image/gif', webp: 'image/webp' };
var VIDEO_TYPES = { mp4: 'video/mp4', m4v: 'video/mp4', mov: 'video/quicktime' };

// Refusals by the server keep its `code` (docs/protocol.md "error"); the client's own are
// `timeout`, `closed`, `upload_failed`, `file_unreadable`.
function ChatError(code, message, extra) {
  var e = new Error(message || code);
  e.name = 'ChatError';
  e.code = code;
  if (extra) Object.keys(extra).forEach(function (k) { e[k] = extra[k]; });
  return e;
}

// Delay before reconnect attempt `attempt` (0 = the first after a drop): exponential growth
// capped at maxMs, "equal jitter": a random point in the upper half, so clients that lost
// their connections together do not come back together, and each delay is at least half
// its cap.
function backoffDelay(attempt, opts, random) {
  var o = opts || DEFAULTS.backoff;
  var cap = Math.min(o.maxMs, o.baseMs * Math.pow(o.factor || 2, Math.max(0, attempt)));
  var r = (random || Math.random)();
  return Math.round(cap / 2 + r * cap / 2);
}

var ID_CHARS = '0123456789abcdefghijklmnopqrstuvwxyz';
var idCounter = 0;
// 1 to 64 of A-Z a-z 0-9 _ - . : (client_msg_id, req_id).
function newId(prefix, random) {
  var rnd = random || Math.random;
  var s = '';
  for (var i = 0; i < 12; i++) s += ID_CHARS.charAt(Math.floor(rnd() * ID_CHARS.length));
  idCounter = (idCounter + 1) % 1296;
  return (prefix || '') + Date.now().toString(36) + '-' + idCounter.toString(36) + '-' + s;
}

// The `exp` claim of a JWT (seconds), or null. Mini-programs have neither atob nor Buffer.
var B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
function tokenExpiry(token) {
  try {
    var part = String(token).split('.')[1].replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    var bytes = [];
    var buf = 0;
    var bits = 0;
    for (var i = 0; i < part.length; i++) {
      var v = B64.indexOf(part.charAt(i));
      if (v < 0) return null;
      buf = (buf << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        bytes.push((buf >> bits) & 0xff);
      }
    }
    var json = decodeURIComponent(bytes.map(function (b) { return '%' + (b < 16 ? '0' : '') + b.toString(16); }).join(''));
    var exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp : null;
  } catch (e) {
    return null;
  }
}

// A row as it reads once content security took it down (docs/protocol.md, "Content security"):
// blocked, no text, no media; the same as view.js's blockedRow (chat.js stands alone).
function takenDownRow(r) {
  var c = Object.assign({}, r, { blocked: true, content: '' });
  ['media', 'local_path', 'local_poster', 'url', 'thumb_url', 'poster_url'].forEach(function (k) { delete c[k]; });
  return c;
}

function extOf(path) {
  var m = /\.([A-Za-z0-9]+)(?:[?#].*)?$/.exec(String(path || ''));
  return m ? m[1].toLowerCase() : '';
}

// `wx.chooseMedia`'s tempFiles entry, or a bare temp path, as what the ticket needs.
function mediaInput(kind, file) {
  var f = typeof file === 'string' ? { tempFilePath: file } : Object.assign({}, file);
  f.path = f.tempFilePath || f.path || f.filePath;
  var types = kind === 2 ? VIDEO_TYPES : IMAGE_TYPES;
  f.contentType = f.contentType || types[extOf(f.path)] || (kind === 2 ? 'video/mp4' : 'image/jpeg');
  return f;
}

function call(wx, name, args) {
  return new Promise(function (resolve, reject) {
    if (typeof wx[name] !== 'function') return reject(ChatError('unsupported', 'wx.' + name + ' is missing'));
    wx[name](Object.assign({}, args, { success: resolve, fail: reject }));
  });
}

function ChatClient(options) {
  var o = options || {};
  if (!o.url || !o.userphone || !o.appSid) throw new Error('ChatClient needs url, userphone and appSid');
  this.url = o.url;
  this.userphone = o.userphone;
  this.appSid = o.appSid;
  this.token = o.token || null;
  this.getToken = o.getToken || null;
  // eslint-disable-next-line no-undef
  this.wx = o.wx || (typeof wx !== 'undefined' ? wx : null);
  if (!this.wx) throw new Error('ChatClient needs wx (the global one in a mini-program)');
  this.opts = Object.assign({}, DEFAULTS, o);
  this.opts.backoff = Object.assign({}, DEFAULTS.backoff, o.backoff);
  this.now = o.now || Date.now;
  this.random = o.random || Math.random;
  var t = o.timers || {};
  // Wrapped: a browser's setTimeout throws "Illegal invocation" when called as a method of
  // another object (clients/web/ runs this file too).
  this.setTimeout = t.setTimeout || function (fn, ms) { return setTimeout(fn, ms); };
  this.clearTimeout = t.clearTimeout || function (id) { return clearTimeout(id); };

  this.state = 'idle'; // idle | connecting | open | closed
  this.openPeer = null; // the conversation on screen: resynced after each reconnect
  this._listeners = {};
  EVENTS.forEach(function (e) { this._listeners[e] = []; }, this);
  this._conn = null; // the current connection: {task, opened, dead, ...}
  this._attempt = 0; // reconnect attempts since the last answer
  this._stopped = true;
  this._reconnectTimer = null;
  this._refreshToken = false; // the last attempt failed before opening
  this._requests = []; // answers awaited: conversations, history, read, recall, tickets
  this._outbox = []; // sends not yet acknowledged, in order
  this._newest = {}; // peer -> newest row id seen (for the resync after a reconnect)
  this._seqTop = {}; // peer -> highest `seq` up to which every message was seen
  this._ahead = {}; // peer -> {seq: true} seen beyond a gap
  this._gapTimers = {}; // peer -> timer of the gap check
  this._readSent = {}; // peer -> newest id sent in a read frame
  this._typedAt = {}; // peer -> when a typing frame was last sent
  this._takenDown = {}; // message id -> true: seen taken down by content security (few: kept for the session)
  this._opened = [];
}

ChatClient.prototype.on = function (event, fn) {
  if (!this._listeners[event]) throw new Error('unknown event ' + event);
  var list = this._listeners[event];
  list.push(fn);
  return function off() {
    var i = list.indexOf(fn);
    if (i >= 0) list.splice(i, 1);
  };
};

ChatClient.prototype._emit = function (event, payload) {
  this._listeners[event].slice().forEach(function (fn) {
    try {
      fn(payload);
    } catch (e) {
      if (event === 'error') console.error(e);
      else this._emit('error', ChatError('listener', e && e.message, { cause: e, event: event }));
    }
  }, this);
};

ChatClient.prototype._setState = function (state, info) {
  this.state = state;
  this._emit('state', Object.assign({ state: state }, info));
};

// Opens the user connection and keeps it open until close(). Resolves when the socket opens
// (rejects with `closed` if close() comes first).
ChatClient.prototype.connect = function () {
  var self = this;
  var p = new Promise(function (resolve, reject) { self._opened.push({ resolve: resolve, reject: reject }); });
  p.then(null, function () {}); // close() before the socket opened: no unhandled rejection for fire-and-forget callers
  if (this._stopped) {
    this._stopped = false;
    this._attempt = 0;
    this._watchApp();
    this._open();
  } else if (this.state === 'open') {
    this._settleOpened(null);
  }
  return p;
};

ChatClient.prototype._settleOpened = function (err) {
  var waiting = this._opened;
  this._opened = [];
  waiting.forEach(function (w) { if (err) w.reject(err); else w.resolve(); });
};

// Closes the connection for good; pending sends and requests reject with `closed`.
ChatClient.prototype.close = function () {
  this._stopped = true;
  Object.keys(this._gapTimers).forEach(function (peer) {
    if (this._gapTimers[peer]) this.clearTimeout(this._gapTimers[peer]);
  }, this);
  this._gapTimers = {};
  this._hidden = false;
  this._unwatchApp();
  if (this._reconnectTimer) this.clearTimeout(this._reconnectTimer);
  this._reconnectTimer = null;
  var conn = this._conn;
  this._conn = null;
  if (conn) this._retire(conn, 1000, 'closed by the client');
  var err = ChatError('closed', 'the chat was closed');
  while (this._requests.length) this._settle(this._requests[0], err);
  while (this._outbox.length) this._finish(this._outbox[0], err);
  this._settleOpened(err);
  this._setState('closed', { byClient: true });
};

// A hidden mini-program's socket is frozen, yet looks alive to the server until API Gateway's
// 10-minute idle limit (frames posted to it meanwhile are lost): it is closed on
// wx.onAppHide and opened again, with a catch-up (list, open conversation, pending sends), on
// wx.onAppShow.
ChatClient.prototype._watchApp = function () {
  var wx = this.wx;
  var self = this;
  if (this._appWatch || typeof wx.onAppHide !== 'function' || typeof wx.onAppShow !== 'function') return;
  this._appWatch = { hide: function () { self._hide(); }, show: function () { self._show(); } };
  wx.onAppHide(this._appWatch.hide);
  wx.onAppShow(this._appWatch.show);
};

ChatClient.prototype._unwatchApp = function () {
  var w = this._appWatch;
  if (!w) return;
  this._appWatch = null;
  if (typeof this.wx.offAppHide === 'function') this.wx.offAppHide(w.hide);
  if (typeof this.wx.offAppShow === 'function') this.wx.offAppShow(w.show);
};

ChatClient.prototype._hide = function () {
  if (this._stopped || this._hidden) return;
  this._hidden = true;
  if (this._reconnectTimer) this.clearTimeout(this._reconnectTimer);
  this._reconnectTimer = null;
  var conn = this._conn;
  this._conn = null;
  if (conn) this._retire(conn, 1000, 'app hidden');
  this._setState('closed', { code: 1000, reason: 'app hidden', retryInMs: null });
};

ChatClient.prototype._show = function () {
  if (this._stopped || !this._hidden) return;
  this._hidden = false;
  this._attempt = 0;
  if (!this._conn) this._open();
};

ChatClient.prototype._tokenFor = function () {
  var self = this;
  var exp = this.token ? tokenExpiry(this.token) : null;
  var stale = !this.token || this._refreshToken ||
    (exp !== null && exp - this.opts.tokenMarginS <= this.now() / 1000);
  if (!stale) return Promise.resolve(this.token);
  if (!this.getToken) {
    if (exp !== null && exp <= this.now() / 1000) this._emit('error', ChatError('token_expired', 'the token has expired and there is no getToken'));
    return Promise.resolve(this.token);
  }
  return Promise.resolve()
    .then(function () { return self.getToken(); })
    .then(function (t) {
      if (t) self.token = t;
      self._refreshToken = false;
      return self.token;
    }, function (e) {
      self._emit('error', ChatError('token', 'getToken failed: ' + (e && (e.message || e.errMsg)), { cause: e }));
      return self.token;
    });
};

ChatClient.prototype._open = function () {
  var self = this;
  this._reconnectTimer = null;
  if (this._hidden) return; // onAppShow opens it
  this._setState('connecting', { attempt: this._attempt });
  this._tokenFor().then(function (token) {
    if (self._stopped || self._hidden || self._conn) return;
    var q = 'userphone=' + encodeURIComponent(self.userphone) + '&app_sid=' + encodeURIComponent(self.appSid);
    var conn = { task: null, opened: false, dead: false, timers: [], lastRx: 0, lastTx: 0 };
    self._conn = conn;
    var gone = function (info) { self._gone(conn, info); };
    var header = token ? { Authorization: 'Bearer ' + token } : {};
    try {
      conn.task = self.wx.connectSocket({
        url: self.url + (self.url.indexOf('?') >= 0 ? '&' : '?') + q,
        header: header,
        fail: function (e) { gone({ code: 1006, reason: (e && e.errMsg) || 'connectSocket failed' }); },
      });
    } catch (e) {
      return gone({ code: 1006, reason: e.message });
    }
    if (!conn.task) return gone({ code: 1006, reason: 'no SocketTask' });
    conn.task.onOpen(function () { self._onOpen(conn); });
    conn.task.onMessage(function (m) { self._onMessage(conn, m && m.data); });
    conn.task.onClose(function (e) { gone({ code: e && e.code, reason: e && e.reason }); });
    conn.task.onError(function (e) { gone({ code: 1006, reason: (e && e.errMsg) || 'socket error' }); });
  });
};

ChatClient.prototype._later = function (conn, ms, fn) {
  var self = this;
  var id = this.setTimeout(function () {
    var i = conn.timers.indexOf(id);
    if (i >= 0) conn.timers.splice(i, 1);
    if (!conn.dead) fn();
  }, ms);
  conn.timers.push(id);
  return id;
};

ChatClient.prototype._onOpen = function (conn) {
  if (conn !== this._conn || conn.dead) return;
  conn.opened = true;
  conn.openedAt = this.now();
  conn.lastRx = conn.lastTx = this.now();
  this._refreshToken = false;
  this._setState('open');
  this._settleOpened(null);
  this._heartbeat(conn);
  var self = this;
  this._later(conn, this.opts.maxAgeMs, function () { self._recycle(conn, 'connection age'); });
  conn.lastChatRx = this.now();
  this._quietWatch(conn);
  this._resync();
  this._flush();
};

// A frame the server could not deliver (it tries each post three times) would stay missing
// until the next reconnect: an open conversation that has heard nothing for quietResyncMs is
// caught up from the server (`history` since the newest row seen), then watched again.
ChatClient.prototype._quietWatch = function (conn) {
  var self = this;
  var wait = Math.max(0, this.opts.quietResyncMs - (this.now() - conn.lastChatRx));
  this._later(conn, wait, function () {
    if (self.now() - conn.lastChatRx >= self.opts.quietResyncMs) {
      conn.lastChatRx = self.now();
      if (self.openPeer) self._resyncPeer();
    }
    self._quietWatch(conn);
  });
};

ChatClient.prototype._heartbeat = function (conn) {
  var self = this;
  var idle = this.now() - conn.lastTx;
  var wait = Math.max(0, this.opts.heartbeatMs - idle);
  this._later(conn, wait, function () {
    if (self.now() - conn.lastTx >= self.opts.heartbeatMs) {
      var pingAt = self.now();
      self._send({ action: 'ping' });
      self._later(conn, self.opts.pongTimeoutMs, function () {
        if (conn.lastRx < pingAt) self._recycle(conn, 'no answer to ping', true);
      });
    }
    self._heartbeat(conn);
  });
};

// Stops a connection without reconnecting through the backoff: the caller decides.
ChatClient.prototype._retire = function (conn, code, reason) {
  conn.dead = true;
  conn.timers.splice(0).forEach(function (id) { this.clearTimeout(id); }, this);
  try {
    if (conn.task) conn.task.close({ code: code || 1000, reason: reason || '' });
  } catch (e) { /* already closed */ }
};

// Replaces a live connection by a new one: before the 2-hour limit (at once) or when it no
// longer answers (through the backoff).
ChatClient.prototype._recycle = function (conn, reason, broken) {
  if (!conn || conn !== this._conn || conn.dead) return;
  this._retire(conn, 1000, reason);
  this._conn = null;
  var delay = broken ? this._scheduleReconnect() : 0;
  this._setState('closed', { code: 1000, reason: reason, retryInMs: delay });
  if (!broken) this._open();
};

ChatClient.prototype._gone = function (conn, info) {
  if (conn.dead) return;
  var wasOpen = conn.opened;
  this._retire(conn, 1000, 'gone');
  if (conn !== this._conn) return;
  this._conn = null;
  if (!wasOpen) this._refreshToken = true; // maybe the token: ask for a fresh one
  var delay = this._stopped ? null : this._scheduleReconnect();
  this._setState('closed', Object.assign({}, info, { retryInMs: delay }));
};

ChatClient.prototype._scheduleReconnect = function () {
  var self = this;
  if (this._stopped || this._reconnectTimer) return null;
  var delay = backoffDelay(this._attempt, this.opts.backoff, this.random);
  this._attempt += 1;
  this._reconnectTimer = this.setTimeout(function () { self._open(); }, delay);
  return delay;
};

ChatClient.prototype._send = function (frame) {
  var conn = this._conn;
  if (!conn || !conn.opened || conn.dead) return false;
  var self = this;
  conn.lastTx = this.now();
  try {
    conn.task.send({
      data: JSON.stringify(frame),
      fail: function (e) { self._gone(conn, { code: 1006, reason: (e && e.errMsg) || 'send failed' }); },
    });
  } catch (e) {
    this._gone(conn, { code: 1006, reason: e.message });
    return false;
  }
  return conn;
};

// ---------------------------------------------------------------- frames in

ChatClient.prototype._onMessage = function (conn, data) {
  if (conn !== this._conn || conn.dead) return;
  conn.lastRx = this.now();
  var f;
  try {
    f = JSON.parse(typeof data === 'string' ? data : String(data));
  } catch (e) {
    return this._emit('error', ChatError('bad_frame', 'a frame that is not JSON'));
  }
  if (!f || typeof f !== 'object') return;
  if (f.code === 1) this._attempt = 0; // the connection works end to end
  if (f.code === 0 || f.type === 'error') return this._onError(f);
  this._screen(f);
  switch (f.type) {
    case 'pong':
      return;
    case 'message':
      conn.lastChatRx = this.now();
      return this._onChatMessage(f);
    case 'history':
      conn.lastChatRx = this.now();
      return this._onHistory(f);
    case 'conversations':
      return this._answer(f, function (r) { return r.kind === 'conversations' && r.conn === conn; });
    case 'conversation':
      this._emit('conversation', f.data);
      return this._answer(f, function (r) { return r.kind === 'read' && f.data && r.peer === f.data.peer; });
    case 'read':
      return this._emit('read', { peer: f.peer, id: f.id });
    case 'typing':
      return this._emit('typing', { peer: f.peer });
    case 'recall':
      this._emit('recall', { peer: f.peer, id: f.id });
      return this._answer(f, function (r) { return r.kind === 'recall' && r.peer === f.peer && r.id === f.id; });
    case 'blocked':
      // Content security took a stored message down: show it as blocked wherever it is.
      return this._emit('blocked', { peer: f.peer, id: f.id });
    case 'upload':
      return this._answer(f, function (r) { return r.kind === 'ticket' && r.reqId === f.req_id; });
    case 'subscribed':
      return this._answer(f, function (r) { return r.kind === 'subscribe' && r.reqId === f.req_id; });
    default:
      return undefined; // a frame type this client does not know: ignore it
  }
};

// A take-down is final (its objects are deleted), but frames built before it can arrive after
// it: a `message` frame fanned out again for a duplicate send, a page or a list asked for
// earlier. Once a message was seen taken down (a `blocked` frame, a row reading
// `"blocked":true`), every later copy of its row in a frame is emitted blocked too, so no page
// shows its text, picture, thumbnail or poster again. Rewrites `f` in place, before anything
// reads it (events, answers, the acknowledgement of a send).
ChatClient.prototype._screen = function (f) {
  var gone = this._takenDown;
  var screen = function (r) {
    if (!r || !r.id) return r;
    if (r.blocked) gone[r.id] = true;
    return gone[r.id] ? takenDownRow(r) : r;
  };
  var d = f.data;
  if (f.type === 'blocked' && f.id) gone[f.id] = true;
  else if (f.type === 'message' && f.message) f.message = screen(f.message);
  else if (f.type === 'history' && Array.isArray(d)) f.data = d.map(screen);
  else if (f.type === 'conversations' && Array.isArray(d)) d.forEach(function (e) { if (e && e.last) e.last = screen(e.last); });
  else if (f.type === 'conversation' && d && d.last) d.last = screen(d.last);
};

ChatClient.prototype._seen = function (peer, rows) {
  for (var i = 0; i < rows.length; i++) {
    var id = rows[i] && rows[i].id;
    if (id && (!this._newest[peer] || id > this._newest[peer])) this._newest[peer] = id;
  }
};

ChatClient.prototype._onChatMessage = function (f) {
  var row = f.message;
  if (f.peer && row) this._seen(f.peer, [row]);
  if (f.peer && row) this._noteSeq(f.peer, row.seq);
  this._emit('message', { peer: f.peer, message: row, unread: f.unread, client_msg_id: f.client_msg_id || null });
  if (f.client_msg_id) this._acknowledged(f.client_msg_id, row);
};

ChatClient.prototype._onHistory = function (f) {
  var rows = f.data || [];
  var before = f.before || null;
  var me = this.userphone;
  // A row of ours in a page also acknowledges its send (its ack may have been lost).
  rows.forEach(function (r) {
    if (r && r.client_msg_id && r.userphone === me) this._acknowledged(r.client_msg_id, r);
  }, this);
  var matched = this._answer(f, function (r) {
    return r.kind === 'history' && r.peer === f.peer && r.before === before;
  });
  if (!matched) this._emit('history', this._historyEvent(f, {}));
};

// Conversation sequence numbers (`seq`, one per stored message, both users alike): a message
// frame more than one past the highest held means a frame went missing, or is still coming
// (frames of concurrent sends may overtake each other). Not filled within gapWaitMs, the open
// conversation's latest page is fetched; it holds what is missing unless the gap is longer
// than a page, when the conversation starts afresh from it (`complete: false`).
ChatClient.prototype._noteSeq = function (peer, s) {
  if (typeof s !== 'number') return;
  var top = this._seqTop[peer];
  if (top === undefined) {
    this._seqTop[peer] = s;
    return;
  }
  if (s <= top) return;
  var ahead = this._ahead[peer] || (this._ahead[peer] = {});
  ahead[s] = true;
  while (ahead[this._seqTop[peer] + 1]) {
    delete ahead[this._seqTop[peer] + 1];
    this._seqTop[peer] += 1;
  }
  if (!Object.keys(ahead).length || this._gapTimers[peer]) return;
  var self = this;
  this._gapTimers[peer] = this.setTimeout(function () {
    self._gapTimers[peer] = null;
    self._fillGap(peer);
  }, this.opts.gapWaitMs);
};

// The latest page holds every message down to its oldest row: what it shows is the new top.
ChatClient.prototype._noteLatest = function (peer, rows) {
  var top = this._seqTop[peer];
  for (var i = 0; i < rows.length; i++) {
    var s = rows[i] && rows[i].seq;
    if (typeof s === 'number' && (top === undefined || s > top)) top = s;
  }
  if (top !== undefined) this._seqTop[peer] = top;
  var ahead = this._ahead[peer] || {};
  Object.keys(ahead).forEach(function (k) { if (Number(k) <= top) delete ahead[k]; });
};

ChatClient.prototype._fillGap = function (peer) {
  var ahead = this._ahead[peer];
  if (!ahead || !Object.keys(ahead).length || this._stopped) return;
  var need = this._seqTop[peer] + 1; // the first missing number
  if (peer !== this.openPeer) {
    // Not on screen: the list shows its last message; nothing to fetch.
    this._seqTop[peer] = Math.max.apply(null, Object.keys(ahead).map(Number));
    this._ahead[peer] = {};
    return;
  }
  var self = this;
  this.history(peer, { limit: this.opts.resyncLimit, open: false, _quiet: true, _resync: true })
    .then(function (ev) {
      var covers = ev.data.some(function (r) { return typeof r.seq === 'number' && r.seq <= need; });
      self._emit('history', Object.assign({}, ev, { resync: true, complete: covers || !ev.has_more, gap: true }));
    }, function (e) { self._emit('error', e); });
};

ChatClient.prototype._historyEvent = function (f, extra) {
  return Object.assign({
    peer: f.peer,
    data: f.data || [],
    cursor: f.cursor || null,
    has_more: !!f.has_more,
    before: f.before || null,
  }, extra);
};

ChatClient.prototype._onError = function (f) {
  // `label`: why content security refused a text (`content_blocked`); docs/protocol.md.
  var err = ChatError(f.error || 'error', f.msg || f.error, { frame: f, label: f.label || null });
  var self = this;
  // The token this connection was opened with ran out (the server closes it): a new
  // connection with a fresh token from getToken(); what was pending goes again on it, with
  // the same client_msg_id.
  if (f.error === 'token_expired') {
    this._refreshToken = true;
    return this._recycle(this._conn, 'token_expired', false);
  }
  if (f.client_msg_id && this._outboxEntry(f.client_msg_id)) {
    var m = this._outboxEntry(f.client_msg_id);
    if (f.error === 'internal') return this._retryLater(m);
    // Over the user's sends per minute (all their connections): the same frame again once the minute turns.
    if (f.error === 'rate_limited') return this._retryLater(m, this.opts.rateLimitedRetryMs);
    // Stored, but the answer could not be built: the conversation's latest page carries the
    // row (with this client_msg_id), which acknowledges the send. Never sent again.
    if (f.error === 'not_delivered') return this._fetchStored(m);
    if (f.error === 'not_connected') return this._recycle(this._conn, 'not_connected', true);
    return this._finish(m, err);
  }
  if (f.error === 'not_connected') return this._recycle(this._conn, 'not_connected', true);
  if (f.error === 'internal') {
    // A temporary fault. Requests are reads, idempotent, or (tickets) cheap to repeat: ask
    // again in a moment (each still has its timeout).
    this.setTimeout(function () {
      self._requests.forEach(function (r) { r.conn = null; });
      self._flush();
    }, 1000);
    return this._emit('error', err);
  }
  if (f.req_id) {
    var byReq = function (r) { return (r.kind === 'ticket' || r.kind === 'subscribe') && r.reqId === f.req_id; };
    if (this._answer(f, byReq, err)) return;
  }
  var target = this._requests.filter(function (r) { return r.conn && r.errors.indexOf(f.error) >= 0; })[0];
  if (target) return this._settle(target, err);
  this._emit('error', err);
};

// ---------------------------------------------------------------- requests

var REQUEST_ERRORS = {
  conversations: ['bad_cursor', 'bad_limit'],
  history: ['bad_cursor', 'bad_limit', 'bad_peer'],
  read: ['not_found', 'bad_id', 'bad_peer'],
  recall: ['not_yours', 'recall_window_passed', 'not_found', 'bad_id', 'bad_peer'],
  ticket: [],
  subscribe: ['bad_template', 'notices_off', 'bad_result'],
};

// A frame whose answer is awaited; sent now if the socket is open, else when it opens (also
// again after a reconnect, when the answer was lost with the old socket).
ChatClient.prototype._request = function (kind, frame, fields, onAnswer) {
  var self = this;
  return new Promise(function (resolve, reject) {
    var r = Object.assign({ kind: kind, frame: frame, conn: null, errors: REQUEST_ERRORS[kind],
      resolve: resolve, reject: reject, onAnswer: onAnswer }, fields);
    r.timer = self.setTimeout(function () {
      self._settle(r, ChatError('timeout', 'no answer to ' + (frame.action || kind)));
    }, self.opts.requestTimeoutMs);
    self._requests.push(r);
    self._flush();
  });
};

ChatClient.prototype._settle = function (r, err, frame) {
  var i = this._requests.indexOf(r);
  if (i < 0) return;
  this._requests.splice(i, 1);
  this.clearTimeout(r.timer);
  if (err) r.reject(err);
  else r.resolve(r.onAnswer ? r.onAnswer(frame) : frame);
  this._flush();
};

// Settles the oldest sent request `match` accepts; true if there was one.
ChatClient.prototype._answer = function (frame, match, err) {
  var r = this._requests.filter(function (q) { return q.conn && match(q); })[0];
  if (!r) return false;
  this._settle(r, err || null, frame);
  return true;
};

ChatClient.prototype._flush = function () {
  var conn = this._conn;
  if (!conn || !conn.opened || conn.dead) return;
  var listing = false;
  this._requests.forEach(function (r) {
    if (r.kind === 'conversations') {
      // One list request at a time: its answer names no request.
      if (listing) return;
      listing = true;
    }
    if (r.conn === conn) return;
    r.conn = this._send(r.frame) || null;
  }, this);
  this._flushOutbox();
};

// The list, first page (no `before`) or the page after `before`. Emits `conversations` too.
ChatClient.prototype.listConversations = function (opts) {
  var o = opts || {};
  var frame = { action: 'conversations', limit: o.limit || this.opts.pageLimit };
  if (o.before) frame.before = o.before;
  var self = this;
  return this._request('conversations', frame, {}, function (f) {
    var ev = { data: f.data || [], cursor: f.cursor || null, has_more: !!f.has_more,
      before: o.before || null, resync: !!o._resync };
    self._emit('conversations', ev);
    return ev;
  });
};

// A page of one conversation: the latest (no `before`; this also makes `peer` the open
// conversation, the one resynced after a reconnect) or the one just older than `before`.
// Emits `history` too.
ChatClient.prototype.history = function (peer, opts) {
  var o = opts || {};
  if (!o.before && o.open !== false) this.openPeer = peer;
  var frame = o.before
    ? { action: 'history', to: peer, before: o.before, limit: o.limit || this.opts.pageLimit }
    : { action: 'sync', to: peer, limit: o.limit || this.opts.pageLimit };
  var self = this;
  return this._request('history', frame, { peer: peer, before: o.before || null }, function (f) {
    self._seen(peer, f.data || []);
    if (!o.before) self._noteLatest(peer, f.data || []);
    var ev = self._historyEvent(f, { resync: !!o._resync });
    if (!o._quiet) self._emit('history', ev);
    return ev;
  });
};

// The conversation is no longer on screen: no resync of it after reconnects.
ChatClient.prototype.closeConversation = function (peer) {
  if (!peer || this.openPeer === peer) this.openPeer = null;
};

// Everything `peer` sent up to `id` is read. Resolves with the list entry (`conversation`).
ChatClient.prototype.markRead = function (peer, id) {
  var last = this._readSent[peer];
  if (last && id <= last) return Promise.resolve(null);
  this._readSent[peer] = id;
  var self = this;
  return this._request('read', { action: 'read', to: peer, id: id }, { peer: peer, id: id }, function (f) {
    return f.data;
  }).then(null, function (e) {
    if (self._readSent[peer] === id) delete self._readSent[peer];
    throw e;
  });
};

// Shows "typing…" to `peer` (at most one frame every 2 s; dropped while disconnected).
ChatClient.prototype.typing = function (peer) {
  var at = this._typedAt[peer] || 0;
  if (this.now() - at < this.opts.typingGapMs) return false;
  if (!this._send({ action: 'typing', to: peer })) return false;
  this._typedAt[peer] = this.now();
  return true;
};

// Takes back one of your messages (within the server's recall window). Resolves on the
// `recall` frame; rejects with `not_yours`, `recall_window_passed`, `not_found`.
// Offline notices. Call it from a tap (WeChat shows its dialog only then): asks the user to
// allow the deployment's subscribe message template (`noticeTemplateId` in the options, or
// `templateId`) with wx.requestSubscribeMessage, and when they accept, reports it with a
// `subscribe` frame: each accept allows one notice when a message comes while they are away.
// Resolves {result, grants}: WeChat's answer (accept, reject, ban, filter) and, after an
// accept, how many notices the user now allows (null otherwise: nothing is sent).
ChatClient.prototype.requestNotices = function (templateId) {
  var self = this;
  var tmpl = templateId || this.opts.noticeTemplateId;
  if (!tmpl || typeof this.wx.requestSubscribeMessage !== 'function') {
    return Promise.reject(ChatError('notices_off', 'no notice template, or no wx.requestSubscribeMessage'));
  }
  return new Promise(function (resolve, reject) {
    self.wx.requestSubscribeMessage({
      tmplIds: [tmpl],
      success: resolve,
      fail: function (e) { reject(ChatError('subscribe_failed', (e && e.errMsg) || 'wx.requestSubscribeMessage failed')); },
    });
  }).then(function (res) {
    var result = res && res[tmpl];
    if (result !== 'accept') return { result: result || 'reject', grants: null };
    var reqId = newId('n', self.random);
    var frame = { action: 'subscribe', req_id: reqId, template_id: tmpl, result: 'accept' };
    return self._request('subscribe', frame, { reqId: reqId }, function (f) {
      return { result: 'accept', grants: f.grants };
    });
  });
};

ChatClient.prototype.recall = function (peer, id) {
  return this._request('recall', { action: 'recall', to: peer, id: id }, { peer: peer, id: id }, function (f) {
    return { peer: f.peer, id: f.id };
  });
};

// ---------------------------------------------------------------- resync

// After each open: the first page of the list, and the open conversation from its newest
// row seen before back to that row.
ChatClient.prototype._resync = function () {
  var self = this;
  this.listConversations({ _resync: true }).then(null, function (e) { self._emit('error', e); });
  this._resyncPeer();
};

// The open conversation's rows after the newest one seen, emitted as one `history` event.
ChatClient.prototype._resyncPeer = function () {
  var self = this;
  var peer = this.openPeer;
  if (!peer) return;
  var known = this._newest[peer] || null;
  var rows = [];
  var pages = 0;
  var step = function (before) {
    return self.history(peer, { before: before, limit: self.opts.resyncLimit, open: false, _quiet: true, _resync: true })
      .then(function (ev) {
        pages += 1;
        rows = ev.data.concat(rows);
        var reached = !ev.has_more || (ev.data.length > 0 && ev.data[0].id <= known);
        if (!known || reached || pages >= self.opts.resyncMaxPages) {
          // complete: `data` holds every row after the newest one seen before, so merge it;
          // otherwise (nothing seen before, or a gap too long to page through) start afresh
          // from `data`, `cursor` and `has_more`.
          return self._emit('history', {
            peer: peer, data: rows, cursor: ev.cursor, has_more: ev.has_more, before: null,
            resync: true, complete: !!known && reached,
          });
        }
        return step(ev.cursor);
      });
  };
  step(null).then(null, function (e) { self._emit('error', e); });
};

// ---------------------------------------------------------------- sends

ChatClient.prototype._outboxEntry = function (id) {
  for (var i = 0; i < this._outbox.length; i++) if (this._outbox[i].id === id) return this._outbox[i];
  return null;
};

ChatClient.prototype._enqueue = function (peer, opts) {
  var self = this;
  var id = (opts && opts.clientMsgId) || newId('m', this.random);
  var existing = this._outboxEntry(id);
  if (existing) return { entry: existing, promise: existing.promise };
  var entry = { id: id, peer: peer, frame: null, conn: null, tries: 0, timer: null, ackTimer: null };
  entry.promise = new Promise(function (resolve, reject) {
    entry.resolve = resolve;
    entry.reject = reject;
  });
  entry.promise.clientMsgId = id;
  this._outbox.push(entry);
  return { entry: entry, promise: entry.promise, fresh: true };
};

// The frame is complete: it goes out in turn; the send timeout starts now.
ChatClient.prototype._ready = function (entry, frame) {
  var self = this;
  if (this._outbox.indexOf(entry) < 0) return;
  entry.frame = frame;
  entry.timer = this.setTimeout(function () {
    self._finish(entry, ChatError('timeout', 'the message was not acknowledged in time; resend it with the same clientMsgId'));
  }, this.opts.sendTimeoutMs);
  this._flushOutbox();
};

// Sends the oldest ready message unless one is already on the wire of this connection:
// the server handles frames concurrently, so this keeps your messages in the order sent.
ChatClient.prototype._flushOutbox = function () {
  var conn = this._conn;
  if (!conn || !conn.opened || conn.dead) return;
  var head = this._outbox.filter(function (m) { return m.frame; })[0];
  if (!head || head.conn === conn || head.hold) return;
  this._transmit(head);
};

ChatClient.prototype._transmit = function (m) {
  var self = this;
  var conn = this._send(m.frame);
  m.conn = conn || null;
  if (!conn) return;
  m.tries += 1;
  if (m.ackTimer) this.clearTimeout(m.ackTimer);
  m.ackTimer = this._later(conn, this.opts.ackTimeoutMs, function () {
    if (self._outbox.indexOf(m) < 0 || m.conn !== conn) return;
    // No acknowledgement: resend once on this socket (harmless: same id), then reconnect.
    if (m.resentOn !== conn) {
      m.resentOn = conn;
      self._transmit(m);
    } else {
      self._recycle(conn, 'no acknowledgement', true);
    }
  });
};

// A temporary server fault (`internal`) or a rate limit: the same frame again in a moment
// (after `delayMs`, else a backoff).
ChatClient.prototype._retryLater = function (m, delayMs) {
  var self = this;
  m.conn = null;
  m.hold = true;
  if (m.ackTimer) this.clearTimeout(m.ackTimer);
  this.setTimeout(function () {
    m.hold = false;
    self._flushOutbox();
  }, delayMs || backoffDelay(Math.min(m.tries - 1, 4), this.opts.backoff, this.random));
};

// `not_delivered`: the message is stored; its row comes with the conversation's latest page
// (`_onHistory` acknowledges rows carrying a client_msg_id of ours). Held so it is not resent.
ChatClient.prototype._fetchStored = function (m) {
  var self = this;
  m.conn = null;
  m.hold = true;
  if (m.ackTimer) this.clearTimeout(m.ackTimer);
  this.history(m.peer, { open: false, _quiet: true }).then(null, function () {
    // The page could not be read either: the send timeout ends it; a resync shows the row.
  }).then(function () {
    if (self._outbox.indexOf(m) >= 0) {
      m.hold = false;
      // Still not acknowledged (the page missed it): a retry with the same id is answered
      // with the stored row, never stored twice.
      self._flushOutbox();
    }
  });
};

ChatClient.prototype._acknowledged = function (id, row) {
  var m = this._outboxEntry(id);
  if (m && m.frame) this._finish(m, null, row);
};

ChatClient.prototype._finish = function (m, err, row) {
  var i = this._outbox.indexOf(m);
  if (i < 0) return;
  this._outbox.splice(i, 1);
  if (m.timer) this.clearTimeout(m.timer);
  if (m.ackTimer) this.clearTimeout(m.ackTimer);
  if (err) m.reject(err);
  else m.resolve(row);
  this._flushOutbox();
};

// Sends text to `peer`. Resolves with the stored row. `opts.clientMsgId`: to retry a message
// that failed (the server stores it once); the returned promise has it as `.clientMsgId`.
ChatClient.prototype.sendText = function (peer, text, opts) {
  var q = this._enqueue(peer, opts);
  if (q.fresh) this._ready(q.entry, { action: 'send', to: peer, client_msg_id: q.entry.id, chat_type: 0, chat_content: String(text) });
  return q.promise;
};

// Sends an image: a temp path, or a wx.chooseMedia tempFiles entry ({tempFilePath, size,
// width, height}). Ticket, wx.uploadFile to the POST form, then the send.
ChatClient.prototype.sendImage = function (peer, file, opts) {
  return this._sendMedia(1, peer, file, opts);
};

// Sends a video: a temp path or a wx.chooseMedia entry; its thumbTempFilePath (or
// opts.poster) is uploaded as an image and becomes the video's poster.
ChatClient.prototype.sendVideo = function (peer, file, opts) {
  return this._sendMedia(2, peer, file, opts);
};

ChatClient.prototype._sendMedia = function (kind, peer, file, opts) {
  var self = this;
  var q = this._enqueue(peer, opts);
  if (!q.fresh) return q.promise;
  var entry = q.entry;
  var f = mediaInput(kind, file);
  var posterPath = kind === 2 ? ((opts && opts.poster) || f.thumbTempFilePath || null) : null;
  var frame = { action: 'send', to: peer, client_msg_id: entry.id, chat_type: kind };
  this.upload(kind, f)
    .then(function (key) {
      frame.chat_content = key;
      if (!posterPath) return null;
      // The poster is cosmetic: a video whose poster fails to upload is sent without one.
      return self.upload(1, mediaInput(1, posterPath)).then(function (k) { frame.poster = k; }, function (e) {
        self._emit('error', ChatError(e.code || 'upload_failed', 'poster not sent: ' + e.message, { cause: e }));
      });
    })
    .then(function () { self._ready(entry, frame); }, function (e) { self._finish(entry, e); });
  return q.promise;
};

// Uploads one file and resolves with its key (for a send's chat_content or poster):
// size and dimensions, ticket, wx.uploadFile.
ChatClient.prototype.upload = function (kind, file) {
  var self = this;
  var f = mediaInput(kind, file);
  return this._describe(kind, f)
    .then(function () {
      var reqId = newId('u', self.random);
      var frame = { action: 'upload', req_id: reqId, chat_type: kind, content_type: f.contentType, size: f.size };
      if (f.width > 0 && f.height > 0) {
        frame.width = Math.round(f.width);
        frame.height = Math.round(f.height);
      }
      return self._request('ticket', frame, { reqId: reqId });
    })
    .then(function (t) { return self._uploadTo(t, f.path); });
};

// Fills in size (wx.getFileInfo) and, for images, dimensions (wx.getImageInfo) when the
// caller did not pass them.
ChatClient.prototype._describe = function (kind, f) {
  var wx = this.wx;
  var size = typeof f.size === 'number' ? Promise.resolve(f.size) : call(wx, 'getFileInfo', { filePath: f.path })
    .then(function (r) { return r.size; }, function (e) {
      throw ChatError('file_unreadable', 'cannot read ' + f.path + ': ' + (e && (e.errMsg || e.message)));
    });
  var dims = f.width || kind !== 1 || typeof wx.getImageInfo !== 'function' ? Promise.resolve(null)
    : call(wx, 'getImageInfo', { src: f.path }).then(null, function () { return null; });
  return Promise.all([size, dims]).then(function (r) {
    f.size = r[0];
    if (r[1] && r[1].width && r[1].height) {
      f.width = r[1].width;
      f.height = r[1].height;
    }
    return f;
  });
};

ChatClient.prototype._uploadTo = function (ticket, filePath) {
  var self = this;
  return new Promise(function (resolve, reject) {
    self.wx.uploadFile({
      url: ticket.post.url,
      filePath: filePath,
      name: 'file',
      formData: ticket.post.fields,
      timeout: self.opts.uploadTimeoutMs,
      success: function (r) {
        if (r.statusCode >= 200 && r.statusCode < 300) resolve(ticket.key);
        else reject(ChatError('upload_failed', 'the storage refused the upload (HTTP ' + r.statusCode + ')', { status: r.statusCode }));
      },
      fail: function (e) {
        reject(ChatError('upload_failed', 'upload failed: ' + ((e && e.errMsg) || 'network error')));
      },
    });
  });
};

var api = {
  ChatClient: ChatClient,
  ChatError: ChatError,
  backoffDelay: backoffDelay,
  tokenExpiry: tokenExpiry,
  newId: newId,
  DEFAULTS: DEFAULTS,
};

// CommonJS in a mini-program and under Node; a global for a plain <script> (clients/web/).
if (typeof module === 'object' && module && module.exports) module.exports = api;
else root.WxChat = api;
})(typeof globalThis !== 'undefined' ? globalThis : this);
