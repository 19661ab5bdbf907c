// view.js: what the example pages show, from rows and events alone.
'use strict';
// A phone in China: labels are device-local, and these rows are written at +08:00.
process.env.TZ = 'Asia/Shanghai';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const v = require('../view');

const T0 = Date.UTC(2026, 10, 26, 6, 0, 0); // 14:00:00 at +08:00
function row(id, secs, extra) {
  const at = T0 + secs * 1000;
  const d = new Date(at + 8 * 3600 * 1000).toISOString(); // the server's DisplayUtcOffset
  return Object.assign({
    id,
    userphone: 'bob',
    username: 'Bob',
    friendphone: 'ann',
    content: 'm' + id,
    chat_type: 0,
    created_at: at,
    created_date: d.slice(0, 10) + ' ' + d.slice(11, 19),
    client_msg_id: null,
  }, extra);
}

test('flagtime: the first row and every row more than 60 s after the one before, as the seed did', () => {
  const rows = [row('01A', 0), row('01B', 30), row('01C', 90), row('01D', 151), row('01E', 211), row('01F', 3600)];
  const out = v.withTimeSeparators(rows, { today: '2026-11-26' });
  assert.deepEqual(out.map((r) => r.flagtime), [true, false, false, true, false, true]);
  assert.deepEqual(out.map((r) => r.timeLabel), ['14:00', '', '', '14:02', '', '15:00']);
  // 60 s exactly is not "more than 60 s" (01C is 60 s after 01B).
  assert.equal(out[2].flagtime, false);
  assert.equal(rows[0].flagtime, undefined, 'the rows themselves are not changed');
});

test('flagtime from the seed\'s created_date alone (iOS cannot parse "YYYY-MM-DD HH:MM:SS")', () => {
  const rows = [row('01A', 0), row('01B', 61), row('01C', 100)].map((r) => {
    const c = Object.assign({}, r);
    delete c.created_at;
    return c;
  });
  assert.deepEqual(v.withTimeSeparators(rows).map((r) => r.flagtime), [true, true, false]);
});

test('a pending row counts from when it was queued', () => {
  const rows = [row('01A', 0), v.pendingRow({ clientMsgId: 'm1', me: 'ann', peer: 'bob', content: 'hi', now: T0 + 120000 })];
  const out = v.withTimeSeparators(rows, { today: '2026-11-26' });
  assert.deepEqual(out.map((r) => r.flagtime), [true, true]);
});

test('time labels: today, this year, an earlier year', () => {
  const r = { created_date: '2026-11-26 09:05:33' };
  assert.equal(v.timeLabel(r, '2026-11-26'), '09:05');
  assert.equal(v.timeLabel(r, '2026-12-01'), '11-26 09:05');
  assert.equal(v.timeLabel(r, '2027-01-02'), '2026-11-26 09:05');
});

test('bubbles: text, image from its thumbnail, video with its poster, recalled', () => {
  const text = v.bubbleFor(row('01A', 0), { me: 'ann' });
  assert.equal(text.kind, 'text');
  assert.equal(text.text, 'm01A');
  assert.equal(text.mine, false);
  assert.equal(text.status, '');
  const media = { content_type: 'image/png', size: 10, width: 640, height: 480, thumb_url: 'https://t/thumb.jpg' };
  const img = v.bubbleFor(row('01B', 0, { chat_type: 1, content: 'https://o/full.png', media }), { me: 'ann' });
  assert.equal(img.kind, 'image');
  assert.equal(img.src, 'https://t/thumb.jpg');
  assert.equal(img.fallback, 'https://o/full.png', 'until the thumbnail exists');
  assert.equal(img.url, 'https://o/full.png');
  assert.deepEqual(img.box, { width: 200, height: 150 });
  const imgBroken = v.bubbleFor(row('01B', 0, { chat_type: 1, content: 'https://o/full.png', media }), { me: 'ann', broken: { '01B': true } });
  assert.equal(imgBroken.src, 'https://o/full.png', 'the thumbnail failed to load: the original');
  // The seed's rows: an off-site URL, no media.
  const seed = v.bubbleFor(row('01C', 0, { chat_type: 1, content: 'https://cdn/a.jpg' }), { me: 'ann' });
  assert.equal(seed.src, 'https://cdn/a.jpg');
  const vid = v.bubbleFor(row('01D', 0, { chat_type: 2, content: 'https://o/v.mp4', media: { poster_url: 'https://o/p.jpg', thumb_url: 'https://t/p.jpg', width: 1280, height: 720 } }), { me: 'ann' });
  assert.equal(vid.kind, 'video');
  assert.equal(vid.url, 'https://o/v.mp4');
  assert.equal(vid.poster, 'https://t/p.jpg');
  assert.equal(vid.fallback, 'https://o/p.jpg');
  assert.equal(v.bubbleFor(row('01D', 0, { chat_type: 2, content: 'https://o/v.mp4', media: { poster_url: 'https://o/p.jpg', thumb_url: 'https://t/p.jpg' } }), { me: 'ann', broken: { '01D': true } }).poster, 'https://o/p.jpg');
  const noPoster = v.bubbleFor(row('01E', 0, { chat_type: 2, content: 'https://o/v.mp4', media: {} }), { me: 'ann' });
  assert.equal(noPoster.poster, '');
  const gone = v.bubbleFor(row('01F', 0, { recalled: true, content: '' }), { me: 'ann' });
  assert.equal(gone.kind, 'recalled');
  assert.equal(gone.text, v.TEXT.recalledTheirs);
  assert.equal(v.bubbleFor(row('01F', 0, { recalled: true, userphone: 'ann' }), { me: 'ann' }).text, v.TEXT.recalledMine);
});

test('my bubbles: pending, failed, sent, read', () => {
  const mine = (id, extra) => row(id, 0, Object.assign({ userphone: 'ann', friendphone: 'bob' }, extra));
  const pending = v.pendingRow({ clientMsgId: 'm9', me: 'ann', peer: 'bob', content: 'hi', now: T0 });
  assert.equal(v.bubbleFor(pending, { me: 'ann' }).status, 'pending');
  assert.equal(v.bubbleFor(pending, { me: 'ann' }).key, 'local-m9');
  const failed = v.setFailed([pending], 'm9')[0];
  assert.equal(v.bubbleFor(failed, { me: 'ann' }).status, 'failed');
  assert.equal(v.bubbleFor(v.setFailed([failed], 'm9', false)[0], { me: 'ann' }).status, 'pending', 'retrying');
  assert.equal(v.bubbleFor(mine('01B'), { me: 'ann', peerReadId: '01A' }).status, 'sent');
  assert.equal(v.bubbleFor(mine('01B'), { me: 'ann', peerReadId: '01B' }).status, 'read');
  assert.equal(v.bubbleFor(mine('01B'), { me: 'ann', peerReadId: '01B' }).statusText, v.TEXT.read);
  assert.equal(v.bubbleFor(mine('01B'), { me: 'ann', peerReadId: '01C' }).status, 'read');
  const pendingImage = v.pendingRow({ clientMsgId: 'm10', me: 'ann', peer: 'bob', chatType: 1, localPath: 'wxfile://tmp/a.jpg', now: T0 });
  assert.equal(v.bubbleFor(pendingImage, { me: 'ann' }).src, 'wxfile://tmp/a.jpg', 'the local file while it uploads');
});

test('chatItems: bubbles with separators', () => {
  const items = v.chatItems([row('01A', 0), row('01B', 10)], { me: 'ann', today: '2026-11-26' });
  assert.deepEqual(items.map((i) => [i.key, i.flagtime, i.timeLabel, i.kind]), [['01A', true, '14:00', 'text'], ['01B', false, '', 'text']]);
});

test('mergeRows: one row per id, the acknowledged row replaces its pending row, pending rows last', () => {
  const p1 = v.pendingRow({ clientMsgId: 'c1', me: 'ann', peer: 'bob', content: 'x', now: T0 });
  const p2 = v.pendingRow({ clientMsgId: 'c2', me: 'ann', peer: 'bob', content: 'y', now: T0 });
  const rows = [row('01A', 0), row('01C', 20), p1, p2];
  const acked = row('01D', 30, { userphone: 'ann', client_msg_id: 'c1', content: 'x' });
  const merged = v.mergeRows(rows, [row('01B', 10), acked, row('01A', 0, { content: 'fresh' })]);
  assert.deepEqual(merged.map((r) => r.id || r.client_msg_id), ['01A', '01B', '01C', '01D', 'c2']);
  assert.equal(merged[0].content, 'fresh', 'the incoming copy wins');
});

test('applyHistory: latest page, older page, a catch-up after a reconnect', () => {
  let s = v.applyHistory(null, { peer: 'bob', data: [row('01C', 20), row('01D', 30)], cursor: 'c1', has_more: true, before: null });
  assert.deepEqual(s.rows.map((r) => r.id), ['01C', '01D']);
  assert.equal(s.cursor, 'c1');
  s = v.applyHistory(s, { peer: 'bob', data: [row('01A', 0), row('01B', 10)], cursor: null, has_more: false, before: 'c1' });
  assert.deepEqual(s.rows.map((r) => r.id), ['01A', '01B', '01C', '01D']);
  assert.equal(s.hasMore, false);
  // A message overtook the page; a send is pending: a latest page keeps both.
  s = v.applyMessage(s, { peer: 'bob', message: row('01F', 50) });
  s.rows = s.rows.concat([v.pendingRow({ clientMsgId: 'c9', me: 'ann', peer: 'bob', content: 'z', now: T0 })]);
  const latest = v.applyHistory(s, { peer: 'bob', data: [row('01D', 30), row('01E', 40)], cursor: 'c2', has_more: true, before: null });
  assert.deepEqual(latest.rows.map((r) => r.id || r.client_msg_id), ['01D', '01E', '01F', 'c9']);
  // A complete catch-up merges and keeps the cursor for older pages.
  const caught = v.applyHistory(s, { peer: 'bob', data: [row('01F', 50), row('01G', 60)], cursor: 'c3', has_more: true, before: null, resync: true, complete: true });
  assert.deepEqual(caught.rows.map((r) => r.id || r.client_msg_id), ['01A', '01B', '01C', '01D', '01F', '01G', 'c9']);
  assert.equal(caught.cursor, s.cursor);
  // An incomplete one (too long a gap) starts afresh from its rows.
  const fresh = v.applyHistory(s, { peer: 'bob', data: [row('01X', 900)], cursor: 'c4', has_more: true, before: null, resync: true, complete: false });
  assert.deepEqual(fresh.rows.map((r) => r.id || r.client_msg_id), ['01X', 'c9']);
  assert.equal(fresh.cursor, 'c4');
});

test('applyRecall blanks the row and drops its media; newestFrom finds what to mark read', () => {
  const rows = [row('01A', 0), row('01B', 10, { chat_type: 1, media: { thumb_url: 't' } }), row('01C', 20, { userphone: 'ann' })];
  const out = v.applyRecall(rows, '01B');
  assert.equal(out[1].recalled, true);
  assert.equal(out[1].content, '');
  assert.equal(out[1].media, undefined);
  assert.equal(rows[1].recalled, undefined);
  assert.equal(v.newestFrom(rows, 'bob').id, '01B');
  assert.equal(v.newestFrom([], 'bob'), null);
});

function entry(peer, at, extra) {
  return Object.assign({ peer, peername: peer.toUpperCase(), peeravatar: '', last: row('01' + at, at, { userphone: peer, content: 'from ' + peer }), unread: 0, updated_at: T0 + at * 1000, peer_read_id: null }, extra);
}

test('the list: badges, previews, pages, a first page after a reconnect keeps older entries', () => {
  assert.deepEqual([0, 1, 99, 100, undefined].map(v.badgeText), ['', '1', '99', '99+', '']);
  const item = v.listItemFor(entry('bob', 5, { unread: 3 }), { me: 'ann', today: '2026-11-26' });
  assert.deepEqual(item, { peer: 'bob', name: 'BOB', avatar: '', unread: 3, badge: '3', preview: 'from bob', time: '14:00' });
  assert.equal(v.preview({ chat_type: 1, userphone: 'bob' }, 'ann'), v.TEXT.image);
  assert.equal(v.preview({ chat_type: 2, userphone: 'bob' }, 'ann'), v.TEXT.video);
  assert.equal(v.preview({ recalled: true, userphone: 'ann' }, 'ann'), v.TEXT.recalledMine);
  let s = v.mergeConversations(null, { data: [entry('d', 40), entry('c', 30)], cursor: 'k1', has_more: true, before: null });
  s = v.mergeConversations(s, { data: [entry('b', 20), entry('a', 10)], cursor: null, has_more: false, before: 'k1' });
  assert.deepEqual(s.list.map((e) => e.peer), ['d', 'c', 'b', 'a']);
  assert.equal(s.hasMore, false);
  // After a reconnect: a first page with b on top; older loaded entries stay, and so does the cursor.
  const r = v.mergeConversations(s, { data: [entry('b', 50, { unread: 2 }), entry('d', 40)], cursor: 'k2', has_more: true, before: null, resync: true });
  assert.deepEqual(r.list.map((e) => e.peer), ['b', 'd', 'c', 'a']);
  assert.equal(r.list[0].unread, 2);
  assert.equal(r.hasMore, false);
});

test('list updates from pushed frames: message, conversation, recall, read', () => {
  let list = [entry('bob', 10), entry('cat', 20)];
  const m = row('01Z', 60, { userphone: 'bob', username: 'Bobby', friendphone: 'ann' });
  list = v.applyMessageToList(list, { peer: 'bob', message: m, unread: 4 });
  assert.deepEqual(list.map((e) => e.peer), ['bob', 'cat']);
  assert.equal(list[0].unread, 4);
  assert.equal(list[0].peername, 'Bobby');
  // My own message to a new peer: named from the row's receiver side.
  const mine = row('01Y', 70, { userphone: 'ann', friendphone: 'dan', friendname: 'Dan' });
  list = v.applyMessageToList(list, { peer: 'dan', message: mine, unread: 0 });
  assert.equal(list[0].peer, 'dan');
  assert.equal(list[0].peername, 'Dan');
  // A repost of an older message (a retried send) changes nothing.
  assert.equal(v.applyMessageToList(list, { peer: 'dan', message: row('01A', 0, { userphone: 'ann' }), unread: 0 }), list);
  list = v.applyEntry(list, Object.assign({}, list.find((e) => e.peer === 'bob'), { unread: 0 }));
  assert.equal(list.find((e) => e.peer === 'bob').unread, 0);
  list = v.applyRecallToList(list, { peer: 'bob', id: '01Z' });
  assert.equal(list.find((e) => e.peer === 'bob').last.recalled, true);
  list = v.applyReadToList(list, { peer: 'dan', id: '01Y' });
  assert.equal(list.find((e) => e.peer === 'dan').peer_read_id, '01Y');
  assert.equal(v.applyReadToList(list, { peer: 'dan', id: '01X' }).find((e) => e.peer === 'dan').peer_read_id, '01Y', 'never back');
});

test('errorText: the seed\'s 视频过大 and the other refusals', () => {
  assert.equal(v.errorText({ code: 'media_too_large' }, 2), '视频过大');
  assert.equal(v.errorText({ code: 'media_too_large' }, 1), '图片过大');
  assert.equal(v.errorText({ code: 'recall_window_passed' }), v.TEXT.recallWindowPassed);
  assert.equal(v.errorText({ code: 'bad_peer', message: 'no such peer' }), 'no such peer');
  assert.equal(v.errorText(null), v.TEXT.fallback);
});

test('content security: a refused text shows its reason and offers the edit; a taken-down one is blocked everywhere', () => {
  // A send refused with content_blocked keeps its label on the failed row.
  let rows = [v.pendingRow({ clientMsgId: 'm1', me: 'ann', peer: 'bob', content: 'bad words', now: T0 })];
  rows = v.setFailed(rows, 'm1', true, { code: 'content_blocked', label: 'porn' });
  const refused = v.bubbleFor(rows[0], { me: 'ann' });
  assert.equal(refused.status, 'blocked');
  assert.equal(refused.statusText, v.TEXT.editAndResend + '（色情）');
  assert.equal(refused.text, 'bad words', 'the user still sees what they wrote');
  // The edit goes again with the same id: pending, with the new text, no reason left.
  rows = v.setFailed(rows, 'm1', false, null, 'nice words');
  assert.deepEqual([rows[0].pending, rows[0].failed, rows[0].blocked_label, rows[0].content], [true, false, null, 'nice words']);
  // Another refusal is a plain failure (tap to resend).
  assert.equal(v.bubbleFor(v.setFailed(rows, 'm1', true, { code: 'timeout' })[0], { me: 'ann' }).status, 'failed');
  assert.equal(v.errorText({ code: 'content_blocked', label: 'fraud' }), v.TEXT.contentBlocked + '（欺诈）');
  assert.equal(v.errorText({ code: 'content_blocked', label: 'something-new' }), v.TEXT.contentBlocked + '（其他）');
  assert.equal(v.errorText({ code: 'moderation_unavailable' }), v.TEXT.moderationUnavailable);
  // A `blocked` frame: the row loses its text and picture, in the conversation and the list.
  const img = row('01G', 0, { chat_type: 1, content: 'https://s3/m/i/x.jpg', media: { thumb_url: 'https://s3/t/x.jpg', width: 10, height: 10 } });
  const conv = v.applyBlocked([row('01F', 0), img], '01G');
  assert.equal(conv[0].blocked, undefined);
  const gone = v.bubbleFor(conv[1], { me: 'ann' });
  assert.deepEqual([gone.kind, gone.text, gone.src, gone.url], ['blocked', v.TEXT.blocked, undefined, undefined]);
  assert.equal(conv[1].media, undefined, 'no cached thumbnail can be shown again');
  // A stored row that already reads blocked (a later page) shows the same.
  assert.equal(v.bubbleFor(row('01H', 0, { blocked: true, content: '' }), { me: 'ann' }).kind, 'blocked');
  let list = [{ peer: 'bob', last: row('01G', 0, { content: 'bad' }), unread: 1 }];
  list = v.applyBlockedToList(list, { peer: 'bob', id: '01G' });
  assert.equal(v.preview(list[0].last, 'ann'), v.TEXT.blocked);
  assert.equal(v.applyBlockedToList(list, { peer: 'cat', id: '01G' })[0], list[0]);
});

test('content security: a taken-down image or video stays blocked against stale copies, with nothing left to show', () => {
  // The sender's own rows: local copies of the files beside the stored URLs.
  const img = row('01G', 0, {
    userphone: 'ann', friendphone: 'bob', chat_type: 1, content: 'https://s3/m/i/x.jpg', client_msg_id: 'm1',
    local_path: 'wxfile://tmp/x.jpg', media: { thumb_url: 'https://s3/t/x.jpg', width: 10, height: 10 },
  });
  const vid = row('01H', 1, {
    userphone: 'ann', friendphone: 'bob', chat_type: 2, content: 'https://s3/m/v/y.mp4', client_msg_id: 'm2',
    local_path: 'wxfile://tmp/y.mp4', local_poster: 'wxfile://tmp/y.jpg',
    media: { thumb_url: 'https://s3/t/y.jpg', poster_url: 'https://s3/m/i/y.jpg', width: 1280, height: 720 },
  });
  const before = [row('01F', 0), img, vid];
  const blocked = v.applyBlocked(v.applyBlocked(before, '01G'), '01H');
  // A thumbnail that failed to load earlier (`broken`: fall back to the original) does not bring it back.
  const ctx = { me: 'ann', broken: { '01G': true, '01H': true } };
  const nothingShown = (rows, why) => {
    assert.deepEqual(rows.map((r) => r.id), ['01F', '01G', '01H'], why);
    for (const r of rows.slice(1)) {
      assert.equal(r.blocked, true, why);
      assert.equal(r.content, '', why);
      for (const k of ['media', 'local_path', 'local_poster']) assert.equal(r[k], undefined, `${why}: ${r.id} ${k}`);
      const b = v.bubbleFor(r, ctx);
      assert.deepEqual([b.kind, b.text, b.status], ['blocked', v.TEXT.blocked, 'sent'], why);
      for (const k of ['src', 'url', 'fallback', 'poster', 'box']) assert.equal(b[k], undefined, `${why}: ${r.id} bubble ${k}`);
    }
  };
  nothingShown(blocked, 'the blocked frame');
  // Stale copies (a `message` frame fanned out again for a duplicate send, an older page
  // arriving late) in either order.
  nothingShown(v.mergeRows(blocked, [img, vid]), 'stale copies merged into blocked rows');
  nothingShown(v.mergeRows([row('01F', 0), img, vid], blocked.slice(1)), 'blocked copies merged into stale rows');
  nothingShown(v.mergeRows([], [row('01F', 0), img, blocked[1], blocked[2], vid]), 'both copies in one page');
  let conv = { rows: blocked, cursor: 'c', hasMore: false };
  nothingShown(v.applyMessage(conv, { peer: 'bob', message: img }).rows, 'a stale message frame');
  nothingShown(v.applyHistory(conv, { peer: 'bob', data: before, cursor: 'c0', has_more: false, before: null }).rows, 'a stale latest page');
  nothingShown(v.applyHistory(conv, { peer: 'bob', data: [img, vid], cursor: null, has_more: false, before: 'c' }).rows, 'a stale older page');
  // The sender's pending rows are replaced by the blocked stored rows, local files and all.
  conv = { rows: [row('01F', 0), v.pendingRow({ clientMsgId: 'm1', me: 'ann', peer: 'bob', chatType: 1, localPath: 'wxfile://tmp/x.jpg', now: T0 })], cursor: null, hasMore: false };
  const acked = v.applyMessage(conv, { peer: 'bob', message: blocked[1] }).rows;
  assert.deepEqual(acked.map((r) => [r.id, r.blocked, r.local_path]), [['01F', undefined, undefined], ['01G', true, undefined]]);

  // The list: the blocked last message reads blocked, not [图片] / [视频], and stays so.
  const entry = (last) => ({ peer: 'bob', last, unread: 0, updated_at: T0 });
  const shown = (list) => v.listItemFor(list[0], { me: 'ann', today: '2026-11-26' }).preview;
  assert.equal(v.preview(img, 'ann'), v.TEXT.image);
  assert.equal(v.preview(blocked[1], 'ann'), v.TEXT.blocked);
  assert.equal(v.preview(blocked[2], 'ann'), v.TEXT.blocked);
  for (const [stale, was] of [[img, v.TEXT.image], [vid, v.TEXT.video]]) {
    let list = [entry(stale)];
    assert.equal(shown(list), was);
    list = v.applyBlockedToList(list, { peer: 'bob', id: stale.id });
    assert.equal(shown(list), v.TEXT.blocked);
    for (const k of ['media', 'local_path', 'local_poster']) assert.equal(list[0].last[k], undefined, k);
    assert.equal(shown(v.applyMessageToList(list, { peer: 'bob', message: stale, unread: 0 })), v.TEXT.blocked, 'a stale message frame');
    assert.equal(shown(v.applyEntry(list, entry(stale))), v.TEXT.blocked, 'a stale conversation entry');
    const page = v.mergeConversations({ list, cursor: null, hasMore: false }, { data: [entry(stale)], cursor: null, has_more: false, before: null });
    assert.equal(shown(page.list), v.TEXT.blocked, 'a stale list page');
    const older = v.mergeConversations({ list, cursor: 'c', hasMore: true }, { data: [entry(stale)], cursor: null, has_more: false, before: 'c' });
    assert.equal(shown(older.list), v.TEXT.blocked, 'a stale older list page');
  }
  // A newer message is the new last, blocked or not.
  const next = row('01J', 120, { content: 'hello' });
  assert.equal(shown(v.applyMessageToList(v.applyBlockedToList([entry(img)], { peer: 'bob', id: '01G' }), { peer: 'bob', message: next })), 'hello');
});
