// What the example pages show, as pure functions of the rows and frames of docs/protocol.md:
// no wx, no Page, no clock unless passed, so Node's test runner covers them. Same ES level as
// chat.js (no async/await, no spread).
(function (root) {
'use strict';

// The words on screen, in one place.
var TEXT = {
  image: '[图片]',
  video: '[视频]',
  recalledMine: '你撤回了一条消息',
  recalledTheirs: '对方撤回了一条消息',
  typing: '对方正在输入…',
  read: '已读',
  sent: '未读',
  pending: '发送中…',
  failed: '发送失败，点按重发',
  imageTooLarge: '图片过大',
  videoTooLarge: '视频过大',
  recallWindowPassed: '已超过可撤回的时间',
  notYours: '只能撤回自己的消息',
  timeout: '网络不佳，消息未发出',
  uploadFailed: '上传失败',
  unsupportedType: '不支持的文件格式',
  closed: '连接已关闭',
  connecting: '连接中…',
  offline: '网络已断开，正在重连…',
  tooLong: '消息过长',
  fallback: '发送失败',
  blocked: '该消息因违反内容规范已被屏蔽',
  contentBlocked: '内容不合规，未发送',
  editAndResend: '内容不合规，点按修改后重发',
  moderationUnavailable: '暂时无法发送，请稍后重试',
  loginRequired: '请先登录',
};

// content_blocked's `label` names (docs/protocol.md, "Content security") as the user reads them.
var LABELS = {
  normal: '正常', ad: '广告', politics: '涉政', porn: '色情', abuse: '辱骂', illegal: '违法',
  fraud: '欺诈', vulgar: '低俗', copyright: '侵权', other: '其他',
};

// The seed's time separators: a row shows the time when it is the first one or more than
// 60 s came between it and the row before (`flagtime`).
var SEPARATOR_GAP_MS = 60 * 1000;

function pad(n) {
  return (n < 10 ? '0' : '') + n;
}

// "YYYY-MM-DD HH:MM:SS" of a local time (for rows not stored yet).
function formatDate(ms) {
  var d = new Date(ms);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
    pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

// Epoch ms of a row: `created_at`; else the seed's `created_date` (with "/" because iOS
// cannot parse "YYYY-MM-DD HH:MM:SS"); else when a pending row was queued.
function rowTime(row) {
  if (!row) return NaN;
  if (typeof row.created_at === 'number') return row.created_at;
  if (row.created_date) return new Date(String(row.created_date).replace(/-/g, '/')).getTime();
  if (typeof row.local_at === 'number') return row.local_at;
  return NaN;
}

// The device's local "YYYY-MM-DD HH:MM:SS" of a row, the clock `today` is read from too:
// `created_date` is at the server's DisplayUtcOffset, which need not be the device's, so it
// is used only for a row without `created_at` (a seed server's).
function rowDate(row) {
  if (row && typeof row.created_at === 'number') return formatDate(row.created_at);
  if (row && row.created_date) return String(row.created_date);
  var t = rowTime(row);
  return isNaN(t) ? '' : formatDate(t);
}

// "14:03" today, "11-25 14:03" this year, "2025-11-25 14:03" before. `today` is
// "YYYY-MM-DD" (default: the device's date).
function timeLabel(row, today) {
  var d = rowDate(row);
  if (!d) return '';
  var day = d.slice(0, 10);
  var hm = d.slice(11, 16);
  var now = today || formatDate(Date.now()).slice(0, 10);
  if (day === now) return hm;
  if (day.slice(0, 4) === now.slice(0, 4)) return day.slice(5) + ' ' + hm;
  return day + ' ' + hm;
}

// Copies of `rows` (oldest first) with `flagtime` as the seed computed it, and `timeLabel`
// on the rows that show one.
function withTimeSeparators(rows, opts) {
  var today = opts && opts.today;
  var prev = NaN;
  return (rows || []).map(function (row, i) {
    var t = rowTime(row);
    var flag = i === 0 || (!isNaN(t) && !isNaN(prev) && t - prev > SEPARATOR_GAP_MS);
    if (!isNaN(t)) prev = t;
    return Object.assign({}, row, { flagtime: flag, timeLabel: flag ? timeLabel(row, today) : '' });
  });
}

// Display size of a picture of w×h within max×max (keeps the bubble from jumping on load).
function fitBox(w, h, max) {
  var m = max || 200;
  if (!(w > 0 && h > 0)) return { width: m, height: m };
  var s = Math.min(1, m / Math.max(w, h));
  return { width: Math.max(40, Math.round(w * s)), height: Math.max(40, Math.round(h * s)) };
}

// One chat bubble. ctx: {me, peerReadId, broken}: `broken` maps keys whose picture failed to
// load (a thumbnail not written yet) to true, to show the original instead.
// `status` of my bubbles: pending | failed | read | sent; '' for the peer's.
function bubbleFor(row, ctx) {
  var me = ctx && ctx.me;
  var mine = row.userphone === me;
  var media = row.media || {};
  var name = row.username || row.userphone || '';
  var b = {
    key: row.id || 'local-' + row.client_msg_id,
    id: row.id || null,
    client_msg_id: row.client_msg_id || null,
    mine: mine,
    name: name,
    initial: name.slice(0, 1).toUpperCase(),
    avatar: row.useravatar || '',
    kind: 'text',
    text: '',
    status: '',
    statusText: '',
  };
  var broken = !!(ctx && ctx.broken && ctx.broken[b.key]);
  if (row.recalled) {
    b.kind = 'recalled';
    b.text = mine ? TEXT.recalledMine : TEXT.recalledTheirs;
  } else if (row.blocked) {
    // Taken down by content security: no text, no picture, never from a cache either.
    b.kind = 'blocked';
    b.text = TEXT.blocked;
  } else if (row.chat_type === 1) {
    // The thumbnail appears a moment after the send and answers 404 until then: the page
    // swaps to `fallback` (the original) on the image's error.
    b.kind = 'image';
    b.url = row.local_path || row.content || '';
    b.fallback = row.local_path || row.content || '';
    b.src = broken ? b.fallback : row.local_path || media.thumb_url || row.content || '';
    b.box = fitBox(media.width, media.height);
  } else if (row.chat_type === 2) {
    b.kind = 'video';
    b.url = row.local_path || row.content || '';
    b.fallback = row.local_poster || media.poster_url || '';
    b.poster = broken ? b.fallback : row.local_poster || media.thumb_url || media.poster_url || '';
    b.box = fitBox(media.width, media.height);
  } else {
    b.text = row.content == null ? '' : String(row.content);
  }
  if (mine) {
    var readId = ctx && ctx.peerReadId;
    if (row.failed && row.blocked_label) b.status = 'blocked';
    else if (row.failed) b.status = 'failed';
    else if (row.pending || !row.id) b.status = 'pending';
    else if (readId && row.id <= readId) b.status = 'read';
    else b.status = 'sent';
    b.statusText = b.status === 'blocked'
      ? TEXT.editAndResend + '（' + labelText(row.blocked_label) + '）'
      : TEXT[b.status];
  }
  return b;
}

// What the chat page renders: bubbles with the seed's separators.
function chatItems(rows, ctx) {
  return withTimeSeparators(rows, ctx).map(function (r) {
    return Object.assign(bubbleFor(r, ctx), { flagtime: r.flagtime, timeLabel: r.timeLabel });
  });
}

function isPending(row) {
  return !row.id;
}

function byOrder(a, b) {
  var ta = rowTime(a);
  var tb = rowTime(b);
  if (ta !== tb && !isNaN(ta) && !isNaN(tb)) return ta - tb;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

// Which of two copies of one stored message to keep: the fresh one (it has fresh URLs and the
// recall state), except that a take-down is final: once a copy reads blocked, a copy that does
// not (a `message` frame fanned out again for a duplicate send, an older page arriving late)
// is stale and must not bring its text, picture, thumbnail or poster back.
function keptCopy(old, fresh) {
  if (old && old.blocked && !fresh.blocked) return old;
  return fresh.blocked ? blockedRow(fresh) : fresh;
}

// Rows (oldest first) with `incoming` merged in: one row per id (the incoming copy wins, unless
// only the other copy is blocked: see keptCopy), a stored row replaces the pending row with its
// client_msg_id, pending rows stay last in the order queued.
function mergeRows(rows, incoming) {
  var byId = {};
  var acked = {};
  (incoming || []).forEach(function (r) {
    if (r && r.id) {
      byId[r.id] = keptCopy(byId[r.id], r);
      if (r.client_msg_id) acked[r.client_msg_id] = true;
    }
  });
  var stored = [];
  var pending = [];
  (rows || []).forEach(function (r) {
    if (isPending(r)) {
      if (!acked[r.client_msg_id]) pending.push(r);
    } else {
      byId[r.id] = byId[r.id] ? keptCopy(r, byId[r.id]) : r;
    }
  });
  Object.keys(byId).forEach(function (id) { stored.push(byId[id]); });
  stored.sort(byOrder);
  return stored.concat(pending);
}

// The ids of the blocked rows among `rows`, as a map id -> true.
function blockedIds(rows) {
  var ids = {};
  (rows || []).forEach(function (r) { if (r && r.id && r.blocked) ids[r.id] = true; });
  return ids;
}

// state: {rows, cursor, hasMore}; ev: a `history` event of ChatClient. Returns the new state.
function applyHistory(state, ev) {
  var s = state || { rows: [], cursor: null, hasMore: false };
  var rows = s.rows || [];
  var hadStored = rows.some(function (r) { return !isPending(r); });
  if (ev.before || (ev.resync && ev.complete && hadStored)) {
    // An older page, or a catch-up that reaches the rows shown: add to them.
    var merged = mergeRows(rows, ev.data);
    return ev.before
      ? { rows: merged, cursor: ev.cursor, hasMore: ev.has_more }
      : { rows: merged, cursor: s.cursor, hasMore: s.hasMore };
  }
  // The latest page: it replaces the rows, except those newer than it (their `message`
  // frames overtook the answer) and the pending ones.
  var data = ev.data || [];
  var newest = data.length ? data[data.length - 1] : null;
  var keep = rows.filter(function (r) { return isPending(r) || (newest && byOrder(r, newest) > 0); });
  // A page asked for before a take-down may arrive after it: the rows it replaces still say
  // which of its messages were taken down.
  var gone = blockedIds(rows);
  var fresh = data.map(function (r) { return r && gone[r.id] && !r.blocked ? blockedRow(r) : r; });
  return { rows: mergeRows(keep, fresh), cursor: ev.cursor, hasMore: ev.has_more };
}

// A `message` event for the conversation on screen.
function applyMessage(state, ev) {
  return Object.assign({}, state, { rows: mergeRows(state.rows, [ev.message]) });
}

function recalledRow(r) {
  var c = Object.assign({}, r, { recalled: true, content: '' });
  delete c.media;
  return c;
}

function applyRecall(rows, id) {
  return (rows || []).map(function (r) { return r.id === id ? recalledRow(r) : r; });
}

// A message taken down by content security: nothing of what it showed is kept, not the text,
// not the media's URLs (thumbnail, poster) and not the sender's local copies (local_path,
// local_poster), so no bubble, preview or cache can show it again.
function blockedRow(r) {
  var c = Object.assign({}, r, { blocked: true, content: '' });
  ['media', 'local_path', 'local_poster', 'url', 'thumb_url', 'poster_url'].forEach(function (k) { delete c[k]; });
  return c;
}

// A `blocked` event: the message taken down by content security.
function applyBlocked(rows, id) {
  return (rows || []).map(function (r) { return r.id === id ? blockedRow(r) : r; });
}

function labelText(label) {
  return LABELS[label] || LABELS.other;
}

// A row shown while a send is on its way.
function pendingRow(o) {
  return {
    id: null,
    client_msg_id: o.clientMsgId,
    userphone: o.me,
    friendphone: o.peer,
    chat_type: o.chatType || 0,
    content: o.content || '',
    local_path: o.localPath || null,
    local_poster: o.posterPath || null,
    local_at: o.now,
    pending: true,
    failed: false,
  };
}

// Marks the pending row of `clientMsgId` failed (or, with failed === false, pending again).
// `err`: the send's ChatError; a text content security refused keeps its label, so the page can
// offer to edit it. `content`: the edited text of a resend.
function setFailed(rows, clientMsgId, failed, err, content) {
  return (rows || []).map(function (r) {
    if (!(isPending(r) && r.client_msg_id === clientMsgId)) return r;
    var c = Object.assign({}, r, { failed: failed !== false, pending: failed === false, blocked_label: null });
    if (failed !== false && err && err.code === 'content_blocked') c.blocked_label = err.label || 'other';
    if (typeof content === 'string') c.content = content;
    return c;
  });
}

// The newest row `peer` sent (for markRead), or null.
function newestFrom(rows, peer) {
  for (var i = (rows || []).length - 1; i >= 0; i--) if (rows[i].id && rows[i].userphone === peer) return rows[i];
  return null;
}

// ---------------------------------------------------------------- the conversation list

function badgeText(n) {
  if (!(n > 0)) return '';
  return n > 99 ? '99+' : String(n);
}

function preview(last, me) {
  if (!last) return '';
  if (last.recalled) return last.userphone === me ? TEXT.recalledMine : TEXT.recalledTheirs;
  if (last.blocked) return TEXT.blocked;
  if (last.chat_type === 1) return TEXT.image;
  if (last.chat_type === 2) return TEXT.video;
  return String(last.content || '');
}

// One list row. ctx: {me, today}.
function listItemFor(entry, ctx) {
  var me = ctx && ctx.me;
  return {
    peer: entry.peer,
    name: entry.peername || entry.peer,
    avatar: entry.peeravatar || '',
    unread: entry.unread || 0,
    badge: badgeText(entry.unread),
    preview: preview(entry.last, me),
    time: entry.last ? timeLabel(entry.last, ctx && ctx.today) : '',
  };
}

// A list entry from the server or a frame, `old` the one shown for the same peer: a last
// message taken down stays taken down (a list asked for before the take-down may be answered
// after it; see keptCopy).
function keptEntry(old, entry) {
  if (!(old && old.last && entry && entry.last && old.last.id && old.last.id === entry.last.id)) return entry;
  var last = keptCopy(old.last, entry.last);
  return last === entry.last ? entry : Object.assign({}, entry, { last: last });
}

function keptEntries(list, data) {
  var byPeer = {};
  (list || []).forEach(function (e) { byPeer[e.peer] = e; });
  return (data || []).map(function (e) { return keptEntry(byPeer[e.peer], e); });
}

function byRecent(a, b) {
  return (b.updated_at || 0) - (a.updated_at || 0);
}

// state: {list, cursor, hasMore}; ev: a `conversations` event. A first page (also after a
// reconnect) replaces the entries it covers and keeps the older ones already loaded.
function mergeConversations(state, ev) {
  var s = state || { list: [], cursor: null, hasMore: false };
  var data = keptEntries(s.list, ev.data);
  var inPage = {};
  data.forEach(function (e) { inPage[e.peer] = true; });
  var rest = (s.list || []).filter(function (e) { return !inPage[e.peer]; });
  if (ev.before) {
    return { list: rest.concat(data).sort(byRecent), cursor: ev.cursor, hasMore: ev.has_more };
  }
  var oldest = data.length ? data[data.length - 1].updated_at || 0 : Infinity;
  var older = ev.has_more ? rest.filter(function (e) { return (e.updated_at || 0) <= oldest; }) : [];
  var list = data.concat(older).sort(byRecent);
  return older.length
    ? { list: list, cursor: s.cursor, hasMore: s.hasMore }
    : { list: list, cursor: ev.cursor, hasMore: ev.has_more };
}

function withEntry(list, entry) {
  return (list || []).filter(function (e) { return e.peer !== entry.peer; }).concat([entry]).sort(byRecent);
}

// A `message` event: the conversation moves to the top with its new last row and unread count.
function applyMessageToList(list, ev) {
  var row = ev.message;
  var old = (list || []).filter(function (e) { return e.peer === ev.peer; })[0];
  if (old && old.last && old.last.id && row.id < old.last.id) return list; // a retried send's repost
  var theirs = row.userphone === ev.peer;
  var entry = Object.assign({ peer: ev.peer, unread: 0, peer_read_id: null }, old, {
    last: old && old.last && old.last.id === row.id ? keptCopy(old.last, row) : row,
    unread: typeof ev.unread === 'number' ? ev.unread : (old && old.unread) || 0,
    updated_at: row.created_at || Date.now(),
  });
  var name = theirs ? row.username : row.friendname;
  var avatar = theirs ? row.useravatar : row.friendavatar;
  if (name) entry.peername = name;
  if (avatar) entry.peeravatar = avatar;
  return withEntry(list, entry);
}

// A `conversation` event (read on this or another device): the entry as the server has it.
function applyEntry(list, entry) {
  return withEntry(list, keptEntries(list, [entry])[0]);
}

function applyRecallToList(list, ev) {
  return (list || []).map(function (e) {
    return e.peer === ev.peer && e.last && e.last.id === ev.id ? Object.assign({}, e, { last: recalledRow(e.last) }) : e;
  });
}

function applyBlockedToList(list, ev) {
  return (list || []).map(function (e) {
    return e.peer === ev.peer && e.last && e.last.id === ev.id ? Object.assign({}, e, { last: blockedRow(e.last) }) : e;
  });
}

function applyReadToList(list, ev) {
  return (list || []).map(function (e) {
    return e.peer === ev.peer && (!e.peer_read_id || ev.id > e.peer_read_id) ? Object.assign({}, e, { peer_read_id: ev.id }) : e;
  });
}

// A toast for a rejected send or request (a ChatError from chat.js). kind: 1 image, 2 video.
function errorText(err, kind) {
  var code = err && err.code;
  switch (code) {
    case 'media_too_large': return kind === 2 ? TEXT.videoTooLarge : TEXT.imageTooLarge;
    case 'bad_content_type': return TEXT.unsupportedType;
    case 'content_too_long': return TEXT.tooLong;
    case 'content_blocked': return TEXT.contentBlocked + '（' + labelText(err.label) + '）';
    case 'moderation_unavailable': return TEXT.moderationUnavailable;
    case 'login_required': return TEXT.loginRequired;
    case 'recall_window_passed': return TEXT.recallWindowPassed;
    case 'not_yours': return TEXT.notYours;
    case 'timeout': return TEXT.timeout;
    case 'upload_failed': return TEXT.uploadFailed;
    case 'closed': return TEXT.closed;
    default: return (err && err.message) || TEXT.fallback;
  }
}

var api = {
  TEXT: TEXT,
  SEPARATOR_GAP_MS: SEPARATOR_GAP_MS,
  rowTime: rowTime,
  timeLabel: timeLabel,
  withTimeSeparators: withTimeSeparators,
  fitBox: fitBox,
  bubbleFor: bubbleFor,
  chatItems: chatItems,
  mergeRows: mergeRows,
  applyHistory: applyHistory,
  applyMessage: applyMessage,
  applyRecall: applyRecall,
  applyBlocked: applyBlocked,
  labelText: labelText,
  pendingRow: pendingRow,
  setFailed: setFailed,
  newestFrom: newestFrom,
  badgeText: badgeText,
  preview: preview,
  listItemFor: listItemFor,
  mergeConversations: mergeConversations,
  applyMessageToList: applyMessageToList,
  applyEntry: applyEntry,
  applyRecallToList: applyRecallToList,
  applyBlockedToList: applyBlockedToList,
  applyReadToList: applyReadToList,
  errorText: errorText,
};

// CommonJS in a mini-program and under Node; a global for a plain <script> (clients/web/).
if (typeof module === 'object' && module && module.exports) module.exports = api;
else root.WxChatView = api;
})(typeof globalThis !== 'undefined' ? globalThis : this);
