// The example pages, run outside WeChat: their Page() objects with a setData that merges,
// getApp() holding one ChatClient that takes the global `wx` (the fake one, real sockets),
// against the local stack. And the WXML: every handler it binds exists, every item field it
// shows is produced by view.js.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { ChatClient } = require('../chat');
const view = require('../view');
const { createWx } = require('../test-support/fake-wx');
const { startStack } = require('../test-support/stack');
const files = require('../test-support/files');

const PAGES = path.join(__dirname, '..', 'pages');
const T = { timeout: 30000 };
let stack;
let dir;

function loadPage(name) {
  let config = null;
  global.Page = (c) => { config = c; };
  const file = path.join(PAGES, name, 'index.js');
  delete require.cache[require.resolve(file)];
  require(file);
  delete global.Page;
  return config;
}

// A page instance as the framework makes one: the config's methods, a copy of its data.
function open(config, query) {
  const page = Object.assign({}, config);
  page.data = JSON.parse(JSON.stringify(config.data));
  page.setData = (d) => Object.assign(page.data, d);
  page.onLoad(query || {});
  if (page.onShow) page.onShow();
  return page;
}

// The fake wx plus the UI calls the pages make, recorded.
function uiWx() {
  const wx = createWx();
  Object.assign(wx, {
    toasts: [],
    titles: [],
    navigated: [],
    previewed: [],
    actionSheetTap: 0,
    chooseMediaFiles: [],
    setNavigationBarTitle(o) { wx.titles.push(o.title); },
    showToast(o) { wx.toasts.push(o.title); },
    navigateTo(o) { wx.navigated.push(o.url); },
    stopPullDownRefresh() {},
    showActionSheet(o) { setImmediate(() => o.success({ tapIndex: wx.actionSheetTap })); },
    chooseMedia(o) { setImmediate(() => o.success({ tempFiles: wx.chooseMediaFiles, type: 'mix' })); },
    previewImage(o) { wx.previewed.push(o); },
    previewMedia(o) { wx.previewed.push(o); },
  });
  return wx;
}

function waitFor(what, fn, ms) {
  const deadline = Date.now() + (ms || 10000);
  return new Promise((resolve, reject) => {
    const tick = () => {
      const v = fn();
      if (v) return resolve(v);
      if (Date.now() > deadline) return reject(new Error('timed out waiting for ' + what));
      setTimeout(tick, 20);
    };
    tick();
  });
}

function query(url) {
  return Object.fromEntries(new URL(url, 'http://x/pages/conversations/').searchParams);
}

before(async () => {
  dir = files.tempDir();
  stack = await startStack();
});

after(async () => {
  if (stack) await stack.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
  delete global.wx;
  delete global.getApp;
});

test('every handler the WXML binds exists, every item field it shows is produced by view.js', () => {
  const rows = [
    { id: '01A', userphone: 'b', username: 'B', useravatar: 'https://a', chat_type: 0, content: 'x', created_at: 1 },
    { id: '01B', userphone: 'a', chat_type: 1, content: 'https://i', media: { thumb_url: 'https://t', width: 2, height: 1 }, created_at: 2 },
    { id: '01C', userphone: 'a', chat_type: 2, content: 'https://v', media: { poster_url: 'https://p' }, created_at: 3 },
    { id: '01D', userphone: 'b', recalled: true, content: '', chat_type: 0, created_at: 4 },
  ];
  const produced = {
    chat: new Set(view.chatItems(rows, { me: 'a' }).flatMap((i) => Object.keys(i))),
    conversations: new Set(Object.keys(view.listItemFor({ peer: 'b', unread: 1, last: rows[0] }, { me: 'a' }))),
  };
  for (const name of ['chat', 'conversations']) {
    const wxml = fs.readFileSync(path.join(PAGES, name, 'index.wxml'), 'utf8');
    const config = loadPage(name);
    for (const [, handler] of wxml.matchAll(/\b(?:bind|catch)[a-z]+="(\w+)"/g)) {
      assert.equal(typeof config[handler], 'function', `${name}: ${handler}`);
    }
    for (const [, field] of wxml.matchAll(/\bitem\.(\w+)/g)) {
      assert.ok(produced[name].has(field), `${name}: item.${field}`);
    }
    for (const [, field] of wxml.matchAll(/\{\{\s*!?(\w+)/g)) {
      if (field !== 'item' && field !== 'index') assert.ok(field in config.data, `${name}: data.${field}`);
    }
    for (const ext of ['wxss', 'json']) assert.ok(fs.existsSync(path.join(PAGES, name, 'index.' + ext)));
    JSON.parse(fs.readFileSync(path.join(PAGES, name, 'index.json'), 'utf8'));
  }
});

test('the list and the chat page: badges, separators, pending → sent → read, typing, recall, images, 视频过大', T, async (t) => {
  const app = 'pages-' + process.pid;
  const wx = uiWx();
  global.wx = wx; // the client takes the global wx, as in a mini-program
  const ann = new ChatClient({ url: stack.wsUrl, userphone: 'ann', appSid: app, token: stack.token('ann', app, { name: 'Ann' }), backoff: { baseMs: 40, maxMs: 400 } });
  global.getApp = () => ({ chat: ann });
  const bobWx = createWx();
  const bob = new ChatClient({ url: stack.wsUrl, userphone: 'bob', appSid: app, token: stack.token('bob', app, { name: 'Bob' }), wx: bobWx });
  const bobEvents = [];
  for (const e of ['read', 'recall', 'typing', 'message']) bob.on(e, (p) => bobEvents.push({ type: e, p }));
  t.after(() => { ann.close(); bob.close(); wx.closeAll(); bobWx.closeAll(); });
  await bob.connect();

  const list = open(loadPage('conversations'));
  await ann.connect();
  await bob.sendText('ann', 'hi Ann');
  await bob.sendText('ann', 'are you there?');
  const item = await waitFor('a badge of 2', () => list.data.items.find((i) => i.peer === 'bob' && i.badge === '2'));
  assert.equal(item.name, 'Bob');
  assert.equal(item.preview, 'are you there?');

  list.open({ currentTarget: { dataset: { peer: 'bob' } } });
  assert.match(wx.navigated[0], /^\.\.\/chat\/index\?peer=bob&name=Bob&read=$/);
  const chat = open(loadPage('chat'), query(wx.navigated[0]));
  assert.deepEqual(wx.titles, ['Bob']);
  await waitFor('two bubbles', () => chat.data.items.length === 2);
  assert.deepEqual(chat.data.items.map((i) => [i.text, i.flagtime, i.mine]), [['hi Ann', true, false], ['are you there?', false, false]]);
  assert.match(chat.data.items[0].timeLabel, /^\d\d:\d\d$/);
  // Opening the chat read it: the badge goes, Bob gets the receipt.
  await waitFor('the badge cleared', () => list.data.items[0].badge === '');
  await waitFor('the receipt', () => bobEvents.some((e) => e.type === 'read'));

  // Typing from Bob shows; Ann's typing reaches Bob.
  bob.typing('ann');
  await waitFor('typing…', () => chat.data.typing);
  chat.onInput({ detail: { value: 'hello Bob' } });
  await waitFor('bob hears typing', () => bobEvents.some((e) => e.type === 'typing'));

  // Send: pending at once, then stored, then read by Bob.
  chat.onSend();
  assert.equal(chat.data.draft, '');
  assert.equal(chat.data.items[2].status, 'pending');
  assert.equal(chat.data.items[2].text, 'hello Bob');
  const sent = await waitFor('sent', () => chat.data.items.find((i) => i.text === 'hello Bob' && i.status === 'sent'));
  assert.equal(chat.data.items.length, 3, 'the stored row replaced the pending one');
  assert.equal(list.data.items[0].preview, 'hello Bob');
  await bob.markRead('ann', sent.id);
  await waitFor('read mark', () => chat.data.items.find((i) => i.id === sent.id && i.status === 'read'));

  // Recall by long press.
  chat.onLongPress({ currentTarget: { dataset: { mine: true, id: sent.id } } });
  await waitFor('recalled', () => chat.data.items.find((i) => i.key === sent.id && i.kind === 'recalled'));
  await waitFor('bob hears the recall', () => bobEvents.some((e) => e.type === 'recall' && e.p.id === sent.id));
  assert.equal(list.data.items[0].preview, view.TEXT.recalledMine);

  // An image from wx.chooseMedia: the local file while it uploads, then the stored row.
  const png = files.writeFile(dir, 'page.png', files.png(120, 90));
  wx.chooseMediaFiles = [{ tempFilePath: png, size: fs.statSync(png).size, width: 120, height: 90, fileType: 'image' }];
  chat.onPick();
  const local = await waitFor('pending image', () => chat.data.items.find((i) => i.kind === 'image'));
  assert.equal(local.status, 'pending');
  assert.equal(local.src, png);
  const image = await waitFor('stored image', () => chat.data.items.find((i) => i.kind === 'image' && i.id));
  assert.equal(image.status, 'sent');
  assert.deepEqual(image.box, { width: 120, height: 90 });
  assert.match(image.src, /^http:\/\/127\.0\.0\.1:\d+\/.*\/t\//, 'the thumbnail');
  chat.onImageError({ currentTarget: { dataset: { key: image.key } } });
  assert.equal(chat.data.items.find((i) => i.key === image.key).src, image.fallback, 'the original until the thumbnail exists');
  chat.onBubbleTap({ currentTarget: { dataset: { kind: 'image', url: image.url } } });
  assert.equal(wx.previewed[0].urls[0], image.url);

  // A video over the limit: 视频过大, a failed bubble; tapping it tries again with the same id.
  const big = files.sparseFile(dir, 'page-big.mp4', 26214400 + 1);
  wx.chooseMediaFiles = [{ tempFilePath: big, size: 26214400 + 1, width: 640, height: 360, duration: 60, fileType: 'video' }];
  chat.onPick();
  const failed = await waitFor('failed video', () => chat.data.items.find((i) => i.kind === 'video' && i.status === 'failed'));
  assert.deepEqual(wx.toasts, ['视频过大']);
  chat.onBubbleTap({ currentTarget: { dataset: { status: 'failed', cid: failed.client_msg_id } } });
  await waitFor('second toast', () => wx.toasts.length === 2);
  assert.equal(chat.data.items.filter((i) => i.kind === 'video').length, 1, 'still one bubble');

  chat.onUnload();
  assert.equal(ann.openPeer, null);
  list.onUnload();
});
