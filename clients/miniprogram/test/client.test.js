// chat.js on a fake clock, with scripted SocketTasks (no network): backoff growth and jitter,
// the heartbeat, the 2-hour recycle, acknowledgement timeouts and the token refresh, each
// over minutes or hours of fake time in milliseconds of real time.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { ChatClient, backoffDelay, tokenExpiry, newId, DEFAULTS } = require('../chat');

const T = { timeout: 10000 };
const flush = () => new Promise((r) => setImmediate(r));

function fakeClock() {
  let now = Date.UTC(2026, 10, 26, 8, 0, 0);
  let seq = 0;
  const timers = new Map();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      seq += 1;
      timers.set(seq, { at: now + Math.max(0, ms || 0), fn });
      return seq;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    // Runs every timer due within `ms`, in order, letting promises settle in between.
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        await flush();
        let next = null;
        for (const [id, t] of timers) if (t.at <= end && (!next || t.at < next.t.at)) next = { id, t };
        if (!next) break;
        timers.delete(next.id);
        now = next.t.at;
        next.t.fn();
      }
      now = end;
      await flush();
    },
  };
}

// A wx whose SocketTasks the test opens, feeds and breaks by hand.
function scriptedWx() {
  const wx = {
    tasks: [],
    connectSocket(o) {
      const h = { open: [], message: [], close: [], error: [] };
      const task = {
        url: o.url,
        header: o.header,
        sent: [],
        closedWith: null,
        onOpen: (fn) => h.open.push(fn),
        onMessage: (fn) => h.message.push(fn),
        onClose: (fn) => h.close.push(fn),
        onError: (fn) => h.error.push(fn),
        send(s) { task.sent.push(JSON.parse(s.data)); },
        close(c) { task.closedWith = c || {}; },
        open() { h.open.forEach((fn) => fn({})); },
        deliver(frame) { h.message.forEach((fn) => fn({ data: JSON.stringify(frame) })); },
        fail() {
          h.error.forEach((fn) => fn({ errMsg: 'connectSocket:fail' }));
          h.close.forEach((fn) => fn({ code: 1006, reason: '' }));
        },
        frames: (action) => task.sent.filter((f) => f.action === action),
      };
      wx.tasks.push(task);
      return task;
    },
    get last() {
      return wx.tasks[wx.tasks.length - 1];
    },
    // The app lifecycle, fired by the test (hide(), show()).
    appHandlers: { hide: [], show: [] },
    onAppHide(fn) { wx.appHandlers.hide.push(fn); },
    onAppShow(fn) { wx.appHandlers.show.push(fn); },
    offAppHide(fn) { wx.appHandlers.hide = wx.appHandlers.hide.filter((f) => f !== fn); },
    offAppShow(fn) { wx.appHandlers.show = wx.appHandlers.show.filter((f) => f !== fn); },
    hide() { wx.appHandlers.hide.forEach((fn) => fn()); },
    show() { wx.appHandlers.show.forEach((fn) => fn({})); },
  };
  return wx;
}

function jwt(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return enc({ typ: 'JWT', alg: 'HS256' }) + '.' + enc(claims) + '.sig';
}

function setup(extra) {
  const clock = fakeClock();
  const wx = scriptedWx();
  const states = [];
  const c = new ChatClient(Object.assign({
    url: 'wss://chat.example/prod',
    userphone: 'ann',
    appSid: 'app',
    token: jwt({ sub: 'ann', app: 'app', exp: Math.floor(clock.now() / 1000) + 86400 }),
    wx,
    now: clock.now,
    timers: clock,
  }, extra));
  c.on('state', (s) => states.push(s));
  c.on('error', () => {});
  return { clock, wx, c, states };
}

test('backoffDelay: exponential up to the cap, jittered within the upper half', () => {
  const o = { baseMs: 1000, maxMs: 30000, factor: 2 };
  const caps = [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  caps.forEach((cap, n) => {
    assert.equal(backoffDelay(n, o, () => 0), cap / 2);
    assert.equal(backoffDelay(n, o, () => 0.999999), cap);
    assert.equal(backoffDelay(n, o, () => 0.5), cap * 0.75);
  });
  assert.deepEqual(DEFAULTS.backoff, o);
});

test('reconnect delays grow with every failed attempt, each one jittered, and reset after an answer', T, async () => {
  const rolls = [0.1, 0.9, 0.4, 0.7, 0.0, 0.99, 0.5, 0.3, 0.8];
  let i = 0;
  const { clock, wx, c, states } = setup({ random: () => rolls[i++ % rolls.length] });
  c.connect();
  await flush();
  const delays = [];
  for (let n = 0; n < 8; n++) {
    wx.last.fail();
    const closed = states.filter((s) => s.state === 'closed').pop();
    delays.push(closed.retryInMs);
    const before = wx.tasks.length;
    await clock.advance(closed.retryInMs - 1);
    assert.equal(wx.tasks.length, before, 'not before its delay');
    await clock.advance(1);
    assert.equal(wx.tasks.length, before + 1, 'attempt ' + (n + 2) + ' after ' + closed.retryInMs + ' ms');
  }
  const caps = [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  delays.forEach((d, n) => {
    assert.ok(d >= caps[n] / 2 && d <= caps[n], `delay ${n} = ${d} within [${caps[n] / 2}, ${caps[n]}]`);
    assert.equal(d, Math.round(caps[n] / 2 + rolls[n] * caps[n] / 2), 'jitter from random()');
  });
  // Open without an answer: no reset yet (a server that accepts and drops must not be hammered).
  wx.last.open();
  wx.last.fail();
  assert.ok(states[states.length - 1].retryInMs >= 15000);
  await clock.advance(30000);
  // Open and answered: the next drop starts again from the first delay.
  wx.last.open();
  wx.last.deliver({ code: 1, type: 'conversations', data: [], cursor: null, has_more: false });
  wx.last.fail();
  const d = states[states.length - 1].retryInMs;
  assert.ok(d >= 500 && d <= 1000, 'back to the first delay: ' + d);
  c.close();
});

test('two clients that lose their connections together come back at different times', T, async () => {
  const a = setup({ random: () => 0.2 });
  const b = setup({ random: () => 0.8 });
  for (const x of [a, b]) {
    x.c.connect();
    await flush();
    x.wx.last.fail();
  }
  const da = a.states.pop().retryInMs;
  const db = b.states.pop().retryInMs;
  assert.notEqual(da, db);
  a.c.close();
  b.c.close();
});

test('the URL carries userphone and app_sid, the token goes in a header; after open the list is asked for', T, async () => {
  const { wx, c } = setup({ userphone: '138 0000', appSid: 'wx&1' });
  c.connect();
  await flush();
  const u = new URL(wx.last.url);
  assert.equal(u.searchParams.get('userphone'), '138 0000');
  assert.equal(u.searchParams.get('app_sid'), 'wx&1');
  assert.equal(u.searchParams.has('friendphone'), false);
  assert.match(wx.last.header.Authorization, /^Bearer /);
  wx.last.open();
  assert.deepEqual(wx.last.sent, [{ action: 'conversations', limit: 20 }]);
  c.close();
});

test('a ping after 4 idle minutes; a ping without answer replaces the socket; a new one before 2 hours', T, async () => {
  const { clock, wx, c } = setup({ random: () => 0 });
  c.connect();
  await flush();
  const first = wx.last;
  first.open();
  first.deliver({ code: 1, type: 'conversations', data: [], cursor: null, has_more: false });
  await clock.advance(4 * 60 * 1000 - 1);
  assert.equal(first.frames('ping').length, 0);
  await clock.advance(1);
  assert.equal(first.frames('ping').length, 1, 'a ping at 4 idle minutes, inside the 10-minute limit');
  first.deliver({ code: 1, type: 'pong' });
  await clock.advance(4 * 60 * 1000);
  assert.equal(first.frames('ping').length, 2);
  assert.equal(first.closedWith, null);
  // This ping gets no answer: after 15 s the socket is replaced.
  await clock.advance(15 * 1000);
  assert.ok(first.closedWith, 'closed');
  await clock.advance(1000);
  assert.equal(wx.tasks.length, 2, 'reconnected');
  const second = wx.last;
  second.open();
  // Pings answered all along: at 110 minutes a new connection replaces it, without backoff.
  for (let m = 0; m < 27; m++) {
    await clock.advance(4 * 60 * 1000);
    second.deliver({ code: 1, type: 'pong' });
  }
  assert.equal(wx.tasks.length, 2);
  await clock.advance(2 * 60 * 1000);
  assert.equal(wx.tasks.length, 3, 'replaced before the 2-hour limit');
  assert.equal(second.closedWith.code, 1000);
  c.close();
});

test('an unacknowledged send is resent with the same id, then on a new connection; the late ack resolves it', T, async () => {
  const { clock, wx, c } = setup({ random: () => 0 });
  c.connect();
  await flush();
  wx.last.open();
  const p = c.sendText('bob', 'hello');
  await flush();
  const first = wx.last;
  assert.equal(first.frames('send').length, 1);
  await clock.advance(15000);
  assert.equal(first.frames('send').length, 2, 'resent on the same socket');
  await clock.advance(15000);
  assert.ok(first.closedWith, 'then the socket is given up');
  await clock.advance(1000);
  const second = wx.last;
  assert.notEqual(second, first);
  second.open();
  const resent = second.frames('send');
  assert.equal(resent.length, 1);
  assert.deepEqual(resent[0], first.frames('send')[0]);
  const row = { id: '01J0000000000000000000000A', userphone: 'ann', friendphone: 'bob', content: 'hello', chat_type: 0, client_msg_id: p.clientMsgId };
  second.deliver({ code: 1, type: 'message', peer: 'bob', message: row, unread: 0, client_msg_id: p.clientMsgId });
  assert.deepEqual(await p, row);
  c.close();
});

test('sends wait for the one before; `internal` is retried, another refusal rejects with its code', T, async () => {
  const { clock, wx, c } = setup({ random: () => 0 });
  c.connect();
  await flush();
  wx.last.open();
  const a = c.sendText('bob', 'a');
  const b = c.sendText('bob', 'b');
  await flush();
  assert.deepEqual(wx.last.frames('send').map((f) => f.chat_content), ['a'], 'b waits for a');
  wx.last.deliver({ code: 0, type: 'error', error: 'internal', msg: 'try again', client_msg_id: a.clientMsgId });
  await clock.advance(400);
  assert.equal(wx.last.frames('send').length, 1);
  await clock.advance(200);
  assert.deepEqual(wx.last.frames('send').map((f) => f.chat_content), ['a', 'a'], 'a again, same id');
  wx.last.deliver({ code: 0, type: 'error', error: 'content_too_long', msg: 'too long', client_msg_id: a.clientMsgId });
  await assert.rejects(a, (e) => e.code === 'content_too_long' && e.message === 'too long');
  await flush();
  assert.deepEqual(wx.last.frames('send').map((f) => f.chat_content), ['a', 'a', 'b']);
  // A page that holds the row acknowledges it too (its ack was lost).
  const row = { id: '01J0000000000000000000000B', userphone: 'ann', content: 'b', chat_type: 0, client_msg_id: b.clientMsgId };
  wx.last.deliver({ code: 1, type: 'history', peer: 'bob', data: [row], cursor: null, has_more: false });
  assert.deepEqual(await b, row);
  c.close();
});

test('`rate_limited` sends the same frame again later; `not_delivered` is acknowledged from the page, never resent', T, async () => {
  const { clock, wx, c } = setup({ random: () => 0 });
  c.connect();
  await flush();
  wx.last.open();
  const a = c.sendText('bob', 'a');
  await flush();
  wx.last.deliver({ code: 0, type: 'error', error: 'rate_limited', msg: 'later', client_msg_id: a.clientMsgId });
  await clock.advance(19000);
  assert.equal(wx.last.frames('send').length, 1, 'not before the minute may have turned');
  await clock.advance(1100);
  assert.deepEqual(wx.last.frames('send').map((f) => f.client_msg_id), [a.clientMsgId, a.clientMsgId], 'the same id again');
  const rowA = { id: '01J0000000000000000000000C', userphone: 'ann', content: 'a', chat_type: 0, client_msg_id: a.clientMsgId };
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: rowA, unread: 0, client_msg_id: a.clientMsgId });
  assert.deepEqual(await a, rowA);
  // Stored, but the answer could not be built: the client reads the page instead of resending
  const b = c.sendText('bob', 'b');
  await flush();
  wx.last.deliver({ code: 0, type: 'error', error: 'not_delivered', msg: 'stored', id: '01J0000000000000000000000D', client_msg_id: b.clientMsgId });
  await flush();
  const syncs = wx.last.frames('sync');
  assert.equal(syncs.length >= 1, true, 'asks for the latest page');
  assert.equal(syncs[syncs.length - 1].to, 'bob');
  const rowB = { id: '01J0000000000000000000000D', userphone: 'ann', content: 'b', chat_type: 0, client_msg_id: b.clientMsgId };
  wx.last.deliver({ code: 1, type: 'history', peer: 'bob', data: [rowA, rowB], cursor: null, has_more: false });
  assert.deepEqual(await b, rowB);
  await clock.advance(60000);
  assert.equal(wx.last.frames('send').filter((f) => f.client_msg_id === b.clientMsgId).length, 1, 'b was never resent');
  c.close();
});

test('a token that expires within a minute is replaced through getToken() first', T, async () => {
  const clock0 = Date.UTC(2026, 10, 26, 8, 0, 0) / 1000;
  let calls = 0;
  const fresh = jwt({ sub: 'ann', app: 'app', exp: clock0 + 7200 });
  const { wx, c } = setup({
    token: jwt({ sub: 'ann', app: 'app', exp: clock0 + 30 }),
    getToken: () => { calls += 1; return Promise.resolve(fresh); },
  });
  c.connect();
  await flush();
  await flush();
  assert.equal(calls, 1);
  assert.equal(wx.last.header.Authorization, 'Bearer ' + fresh);
  c.close();
});

test('`token_expired` from the server: a fresh token from getToken(), a new connection, the pending send again with its id', T, async () => {
  const clock0 = Date.UTC(2026, 10, 26, 8, 0, 0) / 1000;
  const fresh = jwt({ sub: 'ann', app: 'app', exp: clock0 + 7200 });
  let calls = 0;
  const { wx, c } = setup({ getToken: () => { calls += 1; return Promise.resolve(fresh); } });
  c.connect();
  await flush();
  wx.last.open();
  const first = wx.last;
  const a = c.sendText('bob', 'a');
  await flush();
  assert.equal(first.frames('send').length, 1);
  first.deliver({ code: 0, type: 'error', error: 'token_expired', msg: 'expired', client_msg_id: a.clientMsgId });
  await flush();
  await flush();
  assert.equal(calls, 1, 'asked for a fresh token');
  assert.notEqual(wx.last, first, 'a new connection');
  assert.ok(first.closedWith, 'the old one closed');
  assert.equal(wx.last.header.Authorization, 'Bearer ' + fresh);
  wx.last.open();
  await flush();
  assert.deepEqual(wx.last.frames('send').map((f) => f.client_msg_id), [a.clientMsgId], 'the same send again');
  const row = { id: '01J0000000000000000000000E', userphone: 'ann', content: 'a', chat_type: 0, client_msg_id: a.clientMsgId };
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: row, unread: 0, client_msg_id: a.clientMsgId });
  assert.deepEqual(await a, row);
  c.close();
});

test('a message whose frame was dropped is fetched once the open conversation has been quiet a while', T, async () => {
  const { clock, wx, c } = setup({ random: () => 0 });
  const seen = [];
  c.on('history', (ev) => seen.push(ev));
  c.on('message', (ev) => seen.push(ev));
  c.connect();
  await flush();
  wx.last.open();
  await flush();
  // the conversation with bob is open, its latest row known
  const h = c.history('bob');
  await flush();
  const row1 = { id: '01J0000000000000000000001A', userphone: 'bob', friendphone: 'ann', content: 'one', chat_type: 0 };
  wx.last.deliver({ code: 1, type: 'history', peer: 'bob', data: [row1], cursor: null, has_more: false });
  await h;
  seen.length = 0;
  const asked = () => wx.last.frames('history').concat(wx.last.frames('sync')).length;
  const before = asked();
  // WHEN bob's next message is stored but its frame never arrives, and nothing else does
  await clock.advance(DEFAULTS.quietResyncMs - 1000);
  assert.equal(asked(), before, 'not while frames may still come');
  await clock.advance(1000);
  // THEN the client asks for what came after the newest row it has
  assert.equal(asked(), before + 1, 'one catch-up');
  const ask = wx.last.frames('sync').concat(wx.last.frames('history')).pop();
  assert.equal(ask.to, 'bob');
  const row2 = { id: '01J0000000000000000000001B', userphone: 'bob', friendphone: 'ann', content: 'dropped', chat_type: 0 };
  wx.last.deliver({ code: 1, type: 'history', peer: 'bob', data: [row1, row2], cursor: null, has_more: false });
  await flush();
  const ev = seen.find((e) => e.resync);
  assert.ok(ev, 'a catch-up history event');
  assert.deepEqual(ev.data.map((r) => r.content), ['one', 'dropped']);
  assert.equal(ev.complete, true, 'merged after the rows it had');
  c.close();
});

test('a `seq` gap: frames that overtake fetch nothing; a dropped frame fetches the latest page, which fills it', T, async () => {
  const { clock, wx, c } = setup({ random: () => 0 });
  const histories = [];
  c.on('history', (ev) => histories.push(ev));
  c.connect();
  await flush();
  wx.last.open();
  await flush();
  const row = (n, from) => ({ id: '01J00000000000000000000' + String(n).padStart(3, '0'), userphone: from || 'bob', content: 'm' + n, chat_type: 0, seq: n });
  const h = c.history('bob');
  await flush();
  wx.last.deliver({ code: 1, type: 'history', peer: 'bob', data: [row(1)], cursor: null, has_more: false });
  await h;
  const asks = () => wx.last.frames('sync').length;
  const before = asks();
  const message = (n) => wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: row(n), unread: 1 });
  // frames of concurrent sends arriving out of order: 3 before 2, within the wait
  message(3);
  await clock.advance(500);
  message(2);
  await clock.advance(DEFAULTS.gapWaitMs * 2);
  assert.equal(asks(), before, 'nothing fetched: the gap closed by itself');
  // a frame that never comes: 5 after 3
  message(5);
  await clock.advance(DEFAULTS.gapWaitMs - 1);
  assert.equal(asks(), before, 'not before the wait');
  await clock.advance(1);
  assert.equal(asks(), before + 1, 'the latest page asked for');
  const page = [1, 2, 3, 4, 5].map((n) => row(n));
  wx.last.deliver({ code: 1, type: 'history', peer: 'bob', data: page, cursor: null, has_more: false });
  await flush();
  const ev = histories.find((e) => e.gap);
  assert.ok(ev, 'emitted as a catch-up');
  assert.ok(ev.data.some((r) => r.content === 'm4'), 'with the dropped message');
  assert.equal(ev.complete, true, 'to merge: it reaches below the gap');
  // and the numbers go on from there without another fetch
  message(6);
  await clock.advance(DEFAULTS.gapWaitMs * 2);
  assert.equal(asks(), before + 1);
  c.close();
});

test('the app hidden closes the socket and reconnects nothing; shown again, a new socket catches up and resends', T, async () => {
  const { clock, wx, c, states } = setup({ random: () => 0 });
  c.connect();
  await flush();
  wx.last.open();
  await flush();
  const first = wx.last;
  const p = c.sendText('bob', 'written while hiding');
  await flush();
  assert.equal(first.frames('send').length, 1);
  // WHEN the mini-program goes to the background
  wx.hide();
  await flush();
  // THEN its socket is closed at once, and nothing reconnects while hidden (90 s: past every
  // backoff, within the send's own timeout)
  assert.ok(first.closedWith, 'closed on hide');
  assert.equal(states[states.length - 1].reason, 'app hidden');
  await clock.advance(90 * 1000);
  assert.equal(wx.last, first, 'no socket while hidden');
  // WHEN it comes back
  wx.show();
  await flush();
  await flush();
  const second = wx.last;
  assert.notEqual(second, first, 'a new socket');
  second.open();
  await flush();
  // THEN it catches up (the list) and sends what was pending, with the same id
  assert.equal(second.frames('conversations').length, 1);
  assert.deepEqual(second.frames('send').map((f) => f.client_msg_id), [p.clientMsgId]);
  const row = { id: '01J0000000000000000000002A', userphone: 'ann', content: 'written while hiding', chat_type: 0, client_msg_id: p.clientMsgId };
  second.deliver({ code: 1, type: 'message', peer: 'bob', message: row, unread: 0, client_msg_id: p.clientMsgId });
  assert.deepEqual(await p, row);
  // AND after close() the lifecycle is no longer watched
  c.close();
  assert.equal(wx.appHandlers.hide.length + wx.appHandlers.show.length, 0);
});

test('tokenExpiry reads exp without atob or Buffer; newId fits client_msg_id', () => {
  assert.equal(tokenExpiry(jwt({ sub: '张三', exp: 1795764723, name: 'Ünïcødé' })), 1795764723);
  assert.equal(tokenExpiry('not a token'), null);
  assert.equal(tokenExpiry(jwt({ sub: 'a' })), null);
  const ids = new Set();
  for (let i = 0; i < 1000; i++) {
    const id = newId('m');
    assert.match(id, /^[A-Za-z0-9_.:-]{1,64}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 1000);
});

test('media without the stack: size from wx.getFileInfo, a ticket asked again after `internal`, the POST form, then the send', T, async () => {
  const { clock, wx, c } = setup({ random: () => 0 });
  const uploads = [];
  wx.getFileInfo = (o) => setImmediate(() => o.success({ size: 2048 }));
  wx.uploadFile = (o) => { uploads.push(o); setImmediate(() => o.success({ statusCode: 204, data: '' })); };
  c.connect();
  await flush();
  wx.last.open();
  const p = c.sendVideo('bob', 'wxfile://tmp/clip.MOV');
  await flush();
  await flush();
  const [ticket] = wx.last.frames('upload');
  assert.deepEqual(ticket, { action: 'upload', req_id: ticket.req_id, chat_type: 2, content_type: 'video/quicktime', size: 2048 });
  wx.last.deliver({ code: 0, type: 'error', error: 'internal', msg: 'later', req_id: ticket.req_id });
  await clock.advance(1000);
  assert.equal(wx.last.frames('upload').length, 2, 'asked again');
  const post = { url: 'https://bucket.s3.example/', fields: { key: 'u/v/k.mov', policy: 'p', 'x-amz-signature': 's' } };
  wx.last.deliver({ code: 1, type: 'upload', req_id: ticket.req_id, key: 'u/v/k.mov', post, max_bytes: 2048 });
  await flush();
  await flush();
  assert.equal(uploads.length, 1);
  assert.equal(uploads[0].url, post.url);
  assert.equal(uploads[0].name, 'file');
  assert.equal(uploads[0].filePath, 'wxfile://tmp/clip.MOV');
  assert.deepEqual(uploads[0].formData, post.fields);
  const [send] = wx.last.frames('send');
  assert.deepEqual(send, { action: 'send', to: 'bob', client_msg_id: p.clientMsgId, chat_type: 2, chat_content: 'u/v/k.mov' });
  const row = { id: '01J0000000000000000000000C', userphone: 'ann', chat_type: 2, content: 'https://…', client_msg_id: p.clientMsgId };
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: row, unread: 0, client_msg_id: p.clientMsgId });
  assert.deepEqual(await p, row);
  c.close();
});

test('chat.js and view.js need no transpiling: ES5 syntax plus Promise; the pages use no async/await or spread', () => {
  const fs = require('node:fs');
  const path = require('node:path');
  const root = path.join(__dirname, '..');
  const code = (f) => fs.readFileSync(path.join(root, f), 'utf8').replace(/(^|\s)\/\/.*$/gm, '$1');
  for (const f of ['chat.js', 'view.js']) {
    const src = code(f);
    for (const [what, re] of [['=>', /=>/], ['template literal', /`/], ['const', /\bconst\b/], ['let', /\blet\b/], ['class', /\bclass\b/],
      ['async', /\basync\b/], ['await', /\bawait\b/], ['spread', /\.\.\./], ['optional chaining', /\?\.[A-Za-z_(]/]]) {
      assert.ok(!re.test(src), `${f} uses ${what}`);
    }
  }
  for (const f of ['pages/chat/index.js', 'pages/conversations/index.js']) {
    const src = code(f);
    for (const re of [/\basync\b/, /\bawait\b/, /\.\.\./, /\?\.[A-Za-z_(]/]) assert.ok(!re.test(src), `${f}: ${re}`);
  }
});

test('content security: content_blocked rejects the send with its label (the id may carry an edit); `blocked` is an event', T, async () => {
  const { wx, c } = setup({ random: () => 0 });
  const blocked = [];
  c.on('blocked', (ev) => blocked.push(ev));
  c.connect();
  await flush();
  wx.last.open();
  const a = c.sendText('bob', 'bad words');
  await flush();
  wx.last.deliver({ code: 0, type: 'error', error: 'content_blocked', label: 'porn', msg: 'not sent', client_msg_id: a.clientMsgId });
  await assert.rejects(a, (e) => e.code === 'content_blocked' && e.label === 'porn');
  // The edit goes with the same client_msg_id.
  const again = c.sendText('bob', 'nice words', { clientMsgId: a.clientMsgId });
  await flush();
  const sent = wx.last.frames('send');
  assert.deepEqual(sent.map((f) => [f.client_msg_id, f.chat_content]), [[a.clientMsgId, 'bad words'], [a.clientMsgId, 'nice words']]);
  const row = { id: '01J0000000000000000000000C', userphone: 'ann', content: 'nice words', chat_type: 0, client_msg_id: a.clientMsgId };
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: row, unread: 0, client_msg_id: a.clientMsgId });
  assert.deepEqual(await again, row);
  wx.last.deliver({ code: 1, type: 'blocked', peer: 'bob', id: row.id });
  assert.deepEqual(blocked, [{ peer: 'bob', id: row.id }]);
  c.close();
});

test('content security: once a message was seen taken down, every later copy of its row is emitted blocked', T, async () => {
  const { wx, c } = setup({ random: () => 0 });
  const seen = { message: [], history: [], conversations: [], conversation: [] };
  for (const e of Object.keys(seen)) c.on(e, (ev) => seen[e].push(ev));
  c.connect();
  await flush();
  wx.last.open();
  await flush();
  const img = { id: '01J0000000000000000000000E', userphone: 'bob', friendphone: 'ann', chat_type: 1, content: 'https://s3/m/i/x.jpg',
    media: { thumb_url: 'https://s3/t/x.jpg', width: 10, height: 10 }, seq: 1 };
  const vid = { id: '01J0000000000000000000000F', userphone: 'bob', friendphone: 'ann', chat_type: 2, content: 'https://s3/m/v/y.mp4',
    media: { thumb_url: 'https://s3/t/y.jpg', poster_url: 'https://s3/m/i/y.jpg' }, seq: 2 };
  const gone = (r) => {
    assert.equal(r.blocked, true, r.id);
    assert.equal(r.content, '', r.id);
    for (const k of ['media', 'local_path', 'local_poster']) assert.equal(r[k], undefined, `${r.id} ${k}`);
  };
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: img, unread: 1 });
  assert.equal(seen.message[0].message.media.thumb_url, 'https://s3/t/x.jpg', 'shown until taken down');
  // Taken down by a `blocked` frame: a copy of the row fanned out again comes blocked.
  wx.last.deliver({ code: 1, type: 'blocked', peer: 'bob', id: img.id });
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: img, unread: 1 });
  gone(seen.message[1].message);
  // A list asked for before the take-down, answered after it.
  wx.last.deliver({ code: 1, type: 'conversations', data: [{ peer: 'bob', last: img, unread: 1, updated_at: 1 }], cursor: null, has_more: false });
  gone(seen.conversations[0].data[0].last);
  // Taken down as a row reading blocked (a page): later stale copies of it come blocked too.
  const page = c.history('bob');
  await flush();
  wx.last.deliver({ code: 1, type: 'history', peer: 'bob', data: [img, { id: vid.id, userphone: 'bob', chat_type: 2, content: '', blocked: true, seq: 2 }], cursor: null, has_more: false });
  (await page).data.forEach(gone);
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: vid, unread: 1 });
  gone(seen.message[2].message);
  wx.last.deliver({ code: 1, type: 'conversation', data: { peer: 'bob', last: vid, unread: 0, updated_at: 2 } });
  gone(seen.conversation[0].last);
  // A send acknowledged with a copy from before its take-down resolves with the blocked row.
  const send = c.sendText('bob', 'x');
  await flush();
  const mine = { id: '01J0000000000000000000000G', userphone: 'ann', chat_type: 0, content: 'x', client_msg_id: send.clientMsgId, seq: 3 };
  wx.last.deliver({ code: 1, type: 'blocked', peer: 'bob', id: mine.id });
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: mine, unread: 0, client_msg_id: send.clientMsgId });
  gone(await send);
  // Other messages are left as they are.
  const other = Object.assign({}, img, { id: '01J0000000000000000000000H', seq: 4 });
  wx.last.deliver({ code: 1, type: 'message', peer: 'bob', message: other, unread: 2 });
  assert.deepEqual(seen.message[seen.message.length - 1].message, other);
  c.close();
});

test('offline notices: requestNotices asks WeChat for the template, reports an accept, and sends nothing otherwise', T, async () => {
  const { wx, c } = setup({ noticeTemplateId: 'tpl-1' });
  const asked = [];
  let answer = 'accept';
  wx.requestSubscribeMessage = (o) => { asked.push(o.tmplIds); o.success({ errMsg: 'requestSubscribeMessage:ok', [o.tmplIds[0]]: answer }); };
  c.connect();
  await flush();
  wx.last.open();
  const granted = c.requestNotices();
  await flush();
  const [frame] = wx.last.frames('subscribe');
  assert.deepEqual([frame.template_id, frame.result], ['tpl-1', 'accept']);
  wx.last.deliver({ code: 1, type: 'subscribed', req_id: frame.req_id, template_id: 'tpl-1', grants: 2 });
  assert.deepEqual(await granted, { result: 'accept', grants: 2 });
  // A refusal in WeChat's dialog sends no frame.
  answer = 'reject';
  assert.deepEqual(await c.requestNotices(), { result: 'reject', grants: null });
  assert.equal(wx.last.frames('subscribe').length, 1);
  // The server's refusal rejects with its code.
  answer = 'accept';
  const other = c.requestNotices('tpl-other');
  await flush();
  const second = wx.last.frames('subscribe')[1];
  wx.last.deliver({ code: 0, type: 'error', error: 'bad_template', msg: 'no', req_id: second.req_id });
  await assert.rejects(other, (e) => e.code === 'bad_template');
  assert.deepEqual(asked, [['tpl-1'], ['tpl-1'], ['tpl-other']]);
  // Without a template (or outside WeChat) there is nothing to ask.
  const { c: bare } = setup();
  await assert.rejects(bare.requestNotices(), (e) => e.code === 'notices_off');
  c.close();
});
