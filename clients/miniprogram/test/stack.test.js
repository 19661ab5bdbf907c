// chat.js against the real local stack: a fake `wx` backed by real sockets (npm `ws`) and real
// HTTP uploads (fetch + FormData), on loopback only. One stack for the file; every test uses an
// app of its own, so tests see nothing of each other. Needs target/debug/local-stack (and the
// function binaries beside it): cargo build --workspace --bins.
'use strict';
const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const { ChatClient } = require('../chat');
const view = require('../view');
const { createWx } = require('../test-support/fake-wx');
const { startStack } = require('../test-support/stack');
const files = require('../test-support/files');

const T = { timeout: 30000 };
let stack;
let dir;
let appSeq = 0;

function newApp() {
  appSeq += 1;
  return `mp${appSeq}-${process.pid}-${Date.now().toString(36)}`;
}

// A client of `account` in `app`, with short backoff so that reconnects take milliseconds.
// Closed at the end of the test.
function client(t, app, account, extra) {
  const wx = createWx();
  const c = new ChatClient(Object.assign({
    url: stack.wsUrl,
    userphone: account,
    appSid: app,
    token: stack.token(account, app, { name: account.toUpperCase() }),
    wx,
    backoff: { baseMs: 40, maxMs: 400 },
  }, extra));
  c.events = [];
  for (const e of ['state', 'conversations', 'conversation', 'history', 'message', 'read', 'typing', 'recall', 'error']) {
    c.on(e, (p) => c.events.push({ type: e, p }));
  }
  c.wxFake = wx;
  t.after(() => {
    c.close();
    wx.closeAll();
  });
  return c;
}

async function connected(t, app, account, extra) {
  const c = client(t, app, account, extra);
  await c.connect();
  return c;
}

function waitFor(what, fn, ms) {
  const deadline = Date.now() + (ms || 10000);
  return new Promise((resolve, reject) => {
    const tick = () => {
      let v;
      try {
        v = fn();
      } catch (e) {
        return reject(e);
      }
      if (v) return resolve(v);
      if (Date.now() > deadline) return reject(new Error('timed out waiting for ' + what));
      setTimeout(tick, 20);
    };
    tick();
  });
}

// The first event of `type` (from now on, or already recorded when `past`) that `pred` accepts.
function nextEvent(c, type, pred, ms) {
  const from = c.events.length;
  return waitFor(`${type} event`, () => {
    for (let i = from; i < c.events.length; i++) {
      const e = c.events[i];
      if (e.type === type && (!pred || pred(e.p))) return e.p;
    }
    return null;
  }, ms);
}

async function all(c, peer) {
  const page = await c.history(peer, { open: false, limit: 100 });
  return page.data;
}

before(async () => {
  dir = files.tempDir();
  stack = await startStack();
});

after(async () => {
  if (stack) await stack.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('connection and framing', () => {
  test('one SocketTask, a user connection with the token in a header, JSON frames', T, async (t) => {
    const app = newApp();
    const ann = client(t, app, 'ann');
    const states = [];
    ann.on('state', (s) => states.push(s.state));
    const listed = nextEvent(ann, 'conversations');
    await ann.connect();
    const first = await listed;
    assert.deepEqual(first, { data: [], cursor: null, has_more: false, before: null, resync: true });
    const [task] = ann.wxFake.sockets;
    const u = new URL(task.url);
    assert.equal(u.origin + u.pathname, stack.wsUrl);
    assert.equal(u.searchParams.get('userphone'), 'ann');
    assert.equal(u.searchParams.get('app_sid'), app);
    assert.equal(u.searchParams.has('friendphone'), false, 'a user connection has no friendphone');
    assert.equal(u.searchParams.has('token'), false, 'the token goes in the header');
    assert.match(task.header.Authorization, /^Bearer ey/);
    assert.deepEqual(task.frames()[0], { action: 'conversations', limit: 20 });

    const p = ann.sendText('bob', 'hi');
    const row = await p;
    const send = task.frames().find((f) => f.action === 'send');
    assert.deepEqual(send, { action: 'send', to: 'bob', client_msg_id: p.clientMsgId, chat_type: 0, chat_content: 'hi' });
    assert.match(p.clientMsgId, /^[A-Za-z0-9_.:-]{1,64}$/);
    for (const text of task.sent) assert.equal(typeof JSON.parse(text), 'object');
    assert.equal(row.client_msg_id, p.clientMsgId);
    assert.deepEqual(states, ['connecting', 'open']);
    assert.equal(ann.wxFake.sockets.length, 1);
    assert.equal(ann.wxFake.openSockets().length, 1);
  });

  test('close() closes the socket for good and rejects what is pending with `closed`', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    ann.wxFake.sockets[0].filter = () => false; // nothing reaches the client any more
    const sending = ann.sendText('bob', 'never acknowledged');
    const listing = ann.listConversations();
    ann.close();
    await assert.rejects(sending, { code: 'closed' });
    await assert.rejects(listing, { code: 'closed' });
    await waitFor('the socket closed', () => ann.wxFake.sockets[0].closed);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(ann.wxFake.sockets.length, 1, 'no reconnect after close()');
    assert.equal(ann.state, 'closed');
  });
});

describe('sending', () => {
  test('a send resolves with the stored row on its acknowledgement; the peer gets it with an unread count', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const bob = await connected(t, app, 'bob');
    const incoming = nextEvent(bob, 'message');
    const row = await ann.sendText('bob', '你好 Bob');
    assert.equal(row.userphone, 'ann');
    assert.equal(row.friendphone, 'bob');
    assert.equal(row.content, '你好 Bob');
    assert.equal(row.chat_type, 0);
    assert.match(row.id, /^[0-9A-Z]{26}$/);
    const ev = await incoming;
    assert.equal(ev.peer, 'ann');
    assert.equal(ev.message.id, row.id);
    assert.equal(ev.unread, 1);
    assert.equal(ev.client_msg_id, null, 'only the sending connection gets the acknowledgement');
    const list = await bob.listConversations();
    assert.equal(list.data.length, 1);
    assert.equal(list.data[0].peer, 'ann');
    assert.equal(list.data[0].unread, 1);
    assert.equal(list.data[0].peername, 'ANN');
  });

  test('sends go out one at a time and are stored in the order sent', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const texts = ['one', 'two', 'three', 'four', 'five'];
    const rows = await Promise.all(texts.map((x) => ann.sendText('bob', x)));
    assert.deepEqual(rows.map((r) => r.content), texts);
    assert.deepEqual((await all(ann, 'bob')).map((r) => r.content), texts);
  });

  test('a refused send rejects with the server error code and stores nothing', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    await assert.rejects(ann.sendText('bob', 'x'.repeat(4097)), { code: 'content_too_long' });
    await assert.rejects(ann.sendText('ann', 'to myself'), { code: 'bad_peer' });
    await assert.rejects(ann.sendText('bob', '   '), { code: 'empty_content' });
    assert.deepEqual(await all(ann, 'bob'), []);
    assert.equal(view.errorText({ code: 'content_too_long' }), view.TEXT.tooLong);
  });

  test('the acknowledgement lost with the socket: resent with the same id after the reconnect, stored once', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const bob = await connected(t, app, 'bob');
    const first = ann.wxFake.sockets[0];
    let swallowed = null;
    first.filter = (text) => {
      const f = JSON.parse(text);
      if (f.type === 'message' && f.client_msg_id) {
        swallowed = f; // stored, but the client never learns: the connection dies first
        first.drop();
        return false;
      }
      return true;
    };
    const p = ann.sendText('bob', 'exactly once');
    const row = await p;
    assert.ok(swallowed, 'the first attempt was stored and acknowledged on the dead socket');
    assert.equal(row.id, swallowed.message.id, 'the resend is acknowledged with the first message');
    assert.equal(ann.wxFake.sockets.length, 2);
    const sends = ann.wxFake.sockets.flatMap((s) => s.frames()).filter((f) => f.action === 'send');
    assert.equal(sends.length, 2);
    assert.ok(sends.every((f) => f.client_msg_id === p.clientMsgId));
    const rows = await all(ann, 'bob');
    assert.equal(rows.length, 1);
    assert.equal(rows[0].id, row.id);
    // Bob saw one message (a repost of the same id at most) and one unread.
    await waitFor('bob got it', () => bob.events.some((e) => e.type === 'message'));
    const ids = new Set(bob.events.filter((e) => e.type === 'message').map((e) => e.p.message.id));
    assert.deepEqual([...ids], [row.id]);
    assert.equal((await bob.listConversations()).data[0].unread, 1);
  });

  test('the socket dropped right after the send left: stored once, resolved after the reconnect', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const first = ann.wxFake.sockets[0];
    first.onSend = (text) => {
      if (JSON.parse(text).action === 'send') first.drop();
    };
    const p = ann.sendText('bob', 'sent into a dying socket');
    const row = await p;
    assert.equal(row.client_msg_id, p.clientMsgId);
    const rows = await all(ann, 'bob');
    assert.deepEqual(rows.map((r) => r.id), [row.id]);
    assert.ok(ann.wxFake.sockets.length >= 2);
  });

  test('a failed message retried with its clientMsgId is stored once', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann', { sendTimeoutMs: 300 });
    const task = ann.wxFake.sockets[0];
    task.filter = (text) => JSON.parse(text).type !== 'message'; // acknowledgements get lost
    const p = ann.sendText('bob', 'retry me');
    await assert.rejects(p, { code: 'timeout' });
    task.filter = null;
    const row = await ann.sendText('bob', 'retry me', { clientMsgId: p.clientMsgId });
    assert.equal(row.client_msg_id, p.clientMsgId);
    assert.deepEqual((await all(ann, 'bob')).map((r) => r.id), [row.id]);
  });
});

describe('reconnects', () => {
  test('after a reconnect the list and the open conversation catch up on what came meanwhile', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann', { resyncLimit: 2 });
    const bob = await connected(t, app, 'bob');
    await bob.sendText('ann', 'before');
    let state = view.applyHistory(null, await ann.history('bob'));
    assert.deepEqual(state.rows.map((r) => r.content), ['before']);
    // Ann's network goes away; Bob writes five messages; the network comes back.
    ann.wxFake.refuseConnect = true;
    ann.wxFake.sockets[0].drop();
    await waitFor('ann offline', () => ann.state !== 'open');
    const sent = [];
    for (let i = 1; i <= 5; i++) sent.push((await bob.sendText('ann', 'meanwhile ' + i)).id);
    const caughtUp = nextEvent(ann, 'history', (e) => e.resync);
    const listed = nextEvent(ann, 'conversations', (e) => e.resync);
    ann.wxFake.refuseConnect = false;
    const ev = await caughtUp;
    assert.equal(ev.peer, 'bob');
    assert.equal(ev.complete, true, 'paged back to the newest row seen before');
    for (const id of sent) assert.ok(ev.data.some((r) => r.id === id), 'has ' + id);
    state = view.applyHistory(state, ev);
    assert.deepEqual(state.rows.map((r) => r.content), ['before', 'meanwhile 1', 'meanwhile 2', 'meanwhile 3', 'meanwhile 4', 'meanwhile 5']);
    const list = await listed;
    assert.equal(list.data[0].peer, 'bob');
    assert.equal(list.data[0].unread, 6);
    assert.ok(ann.wxFake.sockets.length >= 3, 'refused attempts, then the reconnect');
    assert.equal(ann.wxFake.openSockets().length, 1);
  });

  test('an expired token is replaced through getToken() before connecting', T, async (t) => {
    const app = newApp();
    let calls = 0;
    const fresh = stack.token('ann', app);
    const ann = client(t, app, 'ann', {
      token: stack.token('ann', app, { exp: Math.floor(Date.now() / 1000) - 3600 }),
      getToken: () => { calls += 1; return Promise.resolve(fresh); },
    });
    await ann.connect();
    assert.equal(calls, 1);
    assert.equal(ann.wxFake.sockets.length, 1);
    assert.equal(ann.wxFake.sockets[0].header.Authorization, 'Bearer ' + fresh);
  });

  test('a refused handshake asks getToken() for a fresh token and reconnects with it', T, async (t) => {
    const app = newApp();
    let calls = 0;
    const ann = client(t, app, 'ann', {
      token: stack.token('ann', app, { secret: 'not-the-chat-secret-0123456789abcdef' }),
      getToken: () => { calls += 1; return Promise.resolve(stack.token('ann', app)); },
    });
    await ann.connect();
    assert.equal(calls, 1);
    assert.equal(ann.wxFake.sockets.length, 2);
    assert.ok(ann.events.some((e) => e.type === 'state' && e.p.state === 'closed' && e.p.retryInMs > 0));
    assert.ok(await ann.sendText('bob', 'in'));
  });

  test('a ping keeps the connection alive; a ping without answer replaces the socket', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann', { heartbeatMs: 150, pongTimeoutMs: 400 });
    const first = ann.wxFake.sockets[0];
    await waitFor('a pong', () => first.received.some((x) => JSON.parse(x).type === 'pong'));
    assert.ok(first.frames().some((f) => f.action === 'ping'));
    first.filter = () => false; // the socket looks open but nothing arrives any more
    await waitFor('a new socket', () => ann.wxFake.sockets.length === 2 && ann.state === 'open', 5000);
    assert.equal(first.closed || !first.open, true);
    assert.ok(await ann.sendText('bob', 'still here'));
  });

  test('the connection is replaced before its maximum age', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann', { maxAgeMs: 500 });
    await waitFor('a second socket', () => ann.wxFake.sockets.length >= 2 && ann.state === 'open', 5000);
    assert.equal(ann.wxFake.sockets[0].open, false);
    assert.ok(await ann.sendText('bob', 'after the swap'));
  });
});

describe('inbox', () => {
  test('read receipts, typing and recall reach both users', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const bob = await connected(t, app, 'bob');
    const m1 = await ann.sendText('bob', 'first');
    const m2 = await ann.sendText('bob', 'second');
    // Bob opens the conversation and reads up to the newest.
    const page = await bob.history('ann');
    assert.deepEqual(page.data.map((r) => r.id), [m1.id, m2.id]);
    const receipt = nextEvent(ann, 'read');
    const entry = await bob.markRead('ann', view.newestFrom(page.data, 'ann').id);
    assert.equal(entry.peer, 'ann');
    assert.equal(entry.unread, 0);
    assert.deepEqual(await receipt, { peer: 'bob', id: m2.id });
    assert.equal(await bob.markRead('ann', m1.id), null, 'an older position is not sent again');
    await assert.rejects(bob.markRead('ann', '01ZZZZZZZZZZZZZZZZZZZZZZZZ'), { code: 'not_found' });
    // Typing: only the peer hears it, at most once per 2 s from one client.
    const typing = nextEvent(bob, 'typing');
    assert.equal(ann.typing('bob'), true);
    assert.equal(ann.typing('bob'), false, 'throttled');
    assert.deepEqual(await typing, { peer: 'ann' });
    // Recall: both sides hear it; the row reads recalled; Bob cannot recall Ann's row.
    const bobHears = nextEvent(bob, 'recall');
    assert.deepEqual(await ann.recall('bob', m2.id), { peer: 'bob', id: m2.id });
    assert.deepEqual(await bobHears, { peer: 'ann', id: m2.id });
    await assert.rejects(bob.recall('ann', m1.id), { code: 'not_yours' });
    const rows = await all(ann, 'bob');
    assert.equal(rows[1].recalled, true);
    assert.equal(rows[1].content, '');
    assert.equal(view.bubbleFor(rows[1], { me: 'ann' }).text, view.TEXT.recalledMine);
  });

  test('the list pages with its cursor', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    for (const p of ['p1', 'p2', 'p3']) await ann.sendText(p, 'hello ' + p);
    // The list is read from an index that follows writes by a moment.
    let first = await ann.listConversations({ limit: 2 });
    for (let i = 0; i < 50 && !(first.has_more && first.data[0].peer === 'p3'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      first = await ann.listConversations({ limit: 2 });
    }
    assert.deepEqual(first.data.map((e) => e.peer), ['p3', 'p2']);
    assert.equal(first.has_more, true);
    const second = await ann.listConversations({ limit: 2, before: first.cursor });
    assert.deepEqual(second.data.map((e) => e.peer), ['p1']);
    assert.equal(second.has_more, false);
    let state = view.mergeConversations(null, first);
    state = view.mergeConversations(state, second);
    assert.deepEqual(state.list.map((e) => view.listItemFor(e, { me: 'ann' }).preview), ['hello p3', 'hello p2', 'hello p1']);
  });
});

describe('images and videos', () => {
  test('an image: ticket, wx.uploadFile to the POST form, send; the peer gets it', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const bob = await connected(t, app, 'bob');
    const bytes = files.png(64, 48);
    const file = files.writeFile(dir, 'photo.png', bytes);
    const incoming = nextEvent(bob, 'message');
    const row = await ann.sendImage('bob', file);
    assert.equal(ann.wxFake.uploads.length, 1);
    const up = ann.wxFake.uploads[0];
    assert.equal(up.name, 'file');
    assert.equal(up.filePath, file);
    assert.equal(up.formData['Content-Type'], 'image/png');
    assert.match(up.formData.key, /^u\/i\/[0-9a-f]{32}\/[0-9A-Z]{26}_64x48\.png$/);
    assert.ok(up.formData.policy && up.formData['x-amz-signature']);
    assert.ok(up.statusCode >= 200 && up.statusCode < 300);
    const ticket = ann.wxFake.sockets[0].frames().find((f) => f.action === 'upload');
    assert.deepEqual(ticket, { action: 'upload', req_id: ticket.req_id, chat_type: 1, content_type: 'image/png', size: bytes.length, width: 64, height: 48 });
    assert.equal(row.chat_type, 1);
    assert.equal(row.media.content_type, 'image/png');
    assert.equal(row.media.size, bytes.length);
    assert.equal(row.media.width, 64);
    const got = Buffer.from(await (await fetch(row.content)).arrayBuffer());
    assert.ok(got.equals(bytes), 'the row downloads the bytes uploaded');
    assert.equal((await incoming).message.id, row.id);
    const b = view.bubbleFor(row, { me: 'bob' });
    assert.equal(b.kind, 'image');
    assert.equal(b.src, row.media.thumb_url);
    assert.equal(b.fallback, row.content);
  });

  test('a video from wx.chooseMedia: its thumbTempFilePath goes up as an image and becomes the poster', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const video = files.writeFile(dir, 'clip.mp4', files.mp4Bytes(8192));
    const thumb = files.writeFile(dir, 'clip-thumb.png', files.png(32, 18));
    const row = await ann.sendVideo('bob', { tempFilePath: video, size: 8192, width: 320, height: 180, duration: 3, fileType: 'video', thumbTempFilePath: thumb });
    const ups = ann.wxFake.uploads;
    assert.equal(ups.length, 2);
    assert.match(ups[0].formData.key, /^u\/v\/.*_320x180\.mp4$/);
    assert.equal(ups[0].formData['Content-Type'], 'video/mp4');
    assert.match(ups[1].formData.key, /^u\/i\/.*_32x18\.png$/);
    const send = ann.wxFake.sockets[0].frames().find((f) => f.action === 'send');
    assert.equal(send.chat_type, 2);
    assert.equal(send.chat_content, ups[0].formData.key);
    assert.equal(send.poster, ups[1].formData.key);
    assert.equal(row.chat_type, 2);
    assert.equal(row.media.content_type, 'video/mp4');
    assert.ok(row.media.poster_url);
    const b = view.bubbleFor(row, { me: 'ann' });
    assert.equal(b.kind, 'video');
    assert.equal(b.url, row.content);
    assert.ok(b.poster === row.media.thumb_url || b.poster === row.media.poster_url);
  });

  test('a file over the limit is refused before any upload: media_too_large (the seed\'s 视频过大)', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const bigVideo = files.sparseFile(dir, 'big.mp4', 26214400 + 1);
    const bigImage = files.sparseFile(dir, 'big.jpg', 10485760 + 1);
    const v = await ann.sendVideo('bob', bigVideo).then(() => null, (e) => e);
    assert.equal(v.code, 'media_too_large');
    assert.match(v.message, /26214400/);
    assert.equal(view.errorText(v, 2), '视频过大');
    const i = await ann.sendImage('bob', { tempFilePath: bigImage }).then(() => null, (e) => e);
    assert.equal(i.code, 'media_too_large');
    assert.equal(view.errorText(i, 1), '图片过大');
    assert.equal(ann.wxFake.uploads.length, 0, 'nothing was uploaded');
    assert.ok(!ann.wxFake.sockets[0].frames().some((f) => f.action === 'send'), 'nothing was sent');
    assert.deepEqual(await all(ann, 'bob'), []);
  });

  test('an upload the storage refuses rejects with upload_failed and sends nothing', T, async (t) => {
    const app = newApp();
    const ann = await connected(t, app, 'ann');
    const file = files.writeFile(dir, 'liar.png', files.png(40, 40));
    // The ticket is asked for 10 bytes; S3's policy refuses the larger file.
    const e = await ann.sendImage('bob', { tempFilePath: file, size: 10, width: 40, height: 40 }).then(() => null, (x) => x);
    assert.equal(e.code, 'upload_failed');
    assert.ok(e.status >= 400 && e.status < 500, 'S3 answered ' + e.status);
    assert.ok(!ann.wxFake.sockets[0].frames().some((f) => f.action === 'send'));
    assert.deepEqual(await all(ann, 'bob'), []);
  });
});
