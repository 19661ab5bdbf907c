// clients/web/ loads chat.js and view.js with plain <script> tags (no module system, no build
// step): they must then define globals, and the client must call the page's own timers (a
// browser's setTimeout throws "Illegal invocation" when called as another object's method).
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');

function asScripts() {
  const calls = [];
  const ctx = {
    // like a browser's: refuses to run with any `this` but the global object
    setTimeout: function (fn, ms) {
      if (this !== undefined && this !== ctx) throw new TypeError('Illegal invocation');
      calls.push(ms);
      return calls.length;
    },
    clearTimeout: function () {
      if (this !== undefined && this !== ctx) throw new TypeError('Illegal invocation');
    },
  };
  vm.createContext(ctx);
  for (const f of ['chat.js', 'view.js']) {
    vm.runInContext(fs.readFileSync(path.join(__dirname, '..', f), 'utf8'), ctx, { filename: f });
  }
  return { ctx, calls };
}

test('as plain scripts, chat.js and view.js define WxChat and WxChatView', () => {
  const { ctx } = asScripts();
  assert.equal(typeof ctx.WxChat.ChatClient, 'function');
  assert.equal(typeof ctx.WxChatView.chatItems, 'function');
  assert.equal(ctx.module, undefined, 'no CommonJS leaks into the page');
});

test('the client calls the global timers as plain functions', async () => {
  const { ctx, calls } = asScripts();
  const c = new ctx.WxChat.ChatClient({ url: 'ws://x/prod', userphone: '1', appSid: 'a', token: 't', wx: { connectSocket: () => null } });
  c.connect(); // no SocketTask: it schedules a reconnect through setTimeout
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(calls.length >= 1, 'a reconnect was scheduled with the page timer');
  c.close();
});
