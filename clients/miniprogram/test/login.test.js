// login.js and the login page against the real local stack and its fake WeChat API: wx.login
// codes minted at the fake, wx.request to the stack's POST /login, the token opening a
// ChatClient connection. Needs target/debug/local-stack (and the function binaries beside
// it): cargo build --workspace --bins.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { ChatClient } = require('../chat');
const { Login } = require('../login');
const { createWx } = require('../test-support/fake-wx');
const { startStack } = require('../test-support/stack');

const T = { timeout: 30000 };
let stack;
let seq = 0;

before(async () => { stack = await startStack(); });
after(async () => { if (stack) await stack.stop(); });

// A fresh WeChat user: an openid and a number of their own.
function user() {
  seq += 1;
  const tail = String(process.pid % 10000).padStart(4, '0') + String(seq).padStart(3, '0');
  return { openid: `o-mp-${process.pid}-${seq}`, phone: '1390' + tail };
}

function wxFor(u) {
  return createWx({ loginCode: () => stack.wechatCode('login', u.openid) });
}

function login(wx, extra) {
  return new Login(Object.assign({ url: stack.httpUrl + '/login', appSid: stack.demoApp.appSid, wx }, extra));
}

test('a first login asks for the phone button, its code logs in, and the token opens the chat', T, async (t) => {
  const u = user();
  const wx = wxFor(u);
  const l = login(wx, { name: 'Ann' });
  // without the phone code: phone_required, nothing else
  await assert.rejects(l.login(), (e) => e.name === 'LoginError' && e.code === 'phone_required' && e.status === 409);
  // with it: the account is the verified number
  const r = await l.login({ phoneCode: await stack.wechatCode('phone', u.phone) });
  assert.equal(r.account, u.phone);
  assert.ok(r.expiresAt > Date.now() / 1000 + 3600, JSON.stringify(r));
  assert.equal(wx.requests.at(-1).data.phone_code !== undefined, true);
  assert.equal(wx.requests.at(-1).data.name, 'Ann');
  // the token opens a user connection, and getToken logs in again without the phone button
  const chat = new ChatClient({
    url: stack.wsUrl, userphone: r.account, appSid: stack.demoApp.appSid, token: r.token,
    getToken: () => l.getToken(), wx,
  });
  t.after(() => { chat.close(); wx.closeAll(); });
  await chat.connect();
  const again = await l.getToken();
  assert.equal(typeof again, 'string');
  assert.equal(l.last.account, u.phone);
  assert.equal(wx.logins, 3);
});

test('refusals come back as LoginErrors with the server\'s code and Retry-After', T, async () => {
  // a code WeChat never issued
  const bad = login(createWx({ loginCode: () => 'made-up-code' }));
  await assert.rejects(bad.login(), (e) => e.code === 'bad_code' && e.status === 401);
  // an app the stack does not know
  const u = user();
  const other = login(wxFor(u), { appSid: 'nosuchapp' });
  await assert.rejects(other.login(), (e) => e.code === 'unknown_app' && e.status === 400);
  // WeChat busy: 503 with Retry-After
  await fetch(stack.wechatUrl + '/fake/faults', {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ busy: 1 }),
  });
  await assert.rejects(login(wxFor(u)).login(), (e) => e.code === 'wechat_unavailable' && e.retryAfter === 2);
  // wx.login failing never reaches the server
  const offline = createWx();
  await assert.rejects(login(offline).login(), (e) => e.code === 'wx_login');
  assert.equal(offline.requests.length, 0);
  // a server that is not there
  const nowhere = new Login({ url: 'http://127.0.0.1:9/login', appSid: 'wxdemo', wx: wxFor(u) });
  await assert.rejects(nowhere.login(), (e) => e.code === 'network');
});

test('the login page shows the phone button when needed and opens the list after logging in', T, async () => {
  const u = user();
  const wx = wxFor(u);
  const navigated = [];
  wx.redirectTo = (o) => navigated.push(o.url);
  const started = [];
  const app = { login: login(wx), startChat: (r) => started.push(r) };
  global.getApp = () => app;
  global.wx = wx;
  let config = null;
  global.Page = (c) => { config = c; };
  const file = path.join(__dirname, '..', 'pages', 'login', 'index.js');
  delete require.cache[require.resolve(file)];
  require(file);
  delete global.Page;
  try {
    const page = Object.assign({}, config);
    page.data = JSON.parse(JSON.stringify(config.data));
    page.setData = (d) => Object.assign(page.data, d);
    const settled = async () => { while (page.data.busy) await new Promise((r) => setTimeout(r, 20)); };
    // opening the page logs in: a new user is asked for the phone button
    page.onLoad({});
    await settled();
    assert.equal(page.data.phoneNeeded, true);
    // declining the button says why and changes nothing
    page.onGetPhoneNumber({ detail: { errMsg: 'getPhoneNumber:fail user deny' } });
    assert.match(page.data.error, /手机号/);
    // the button's code logs in, starts the chat with the account and opens the list
    page.onGetPhoneNumber({ detail: { code: await stack.wechatCode('phone', u.phone) } });
    await settled();
    assert.equal(started.length, 1);
    assert.equal(started[0].account, u.phone);
    assert.deepEqual(navigated, ['../conversations/index']);
  } finally {
    delete global.getApp;
    delete global.wx;
  }
});

test('the login page\'s WXML binds only handlers the page has', () => {
  const dir = path.join(__dirname, '..', 'pages', 'login');
  const wxml = fs.readFileSync(path.join(dir, 'index.wxml'), 'utf8');
  let config = null;
  global.Page = (c) => { config = c; };
  const file = path.join(dir, 'index.js');
  delete require.cache[require.resolve(file)];
  require(file);
  delete global.Page;
  const bound = [...wxml.matchAll(/bind[a-z]+="(\w+)"/g)].map((m) => m[1]);
  assert.ok(bound.length >= 2);
  for (const h of bound) assert.equal(typeof config[h], 'function', h);
});
