// Starts the local stack (target/debug/local-stack, built by `cargo build --workspace --bins`)
// on a free loopback port (its HTTP API on the next one) with a JWT secret of its own and the
// fake WeChat API, mints tokens with that secret, and
// stops the stack (SIGTERM, then SIGKILL) at the end. Its children (functions, DynamoDB
// Local, s3s-fs) are tied to it and go with it.
'use strict';
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '../../..');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// An HS256 JWT as the chat's login service would mint it (claims of docs/protocol.md).
function mint(secret, claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = enc({ typ: 'JWT', alg: 'HS256' }) + '.' + enc(claims);
  return head + '.' + crypto.createHmac('sha256', secret).update(head).digest('base64url');
}

async function startStack(options) {
  const o = options || {};
  const bin = process.env.LOCAL_STACK || path.join(ROOT, 'target/debug/local-stack');
  if (!fs.existsSync(bin)) {
    throw new Error(`${bin} is missing: build it with  cargo build --workspace --bins`);
  }
  const port = await freePort();
  const secret = 'miniprogram-tests-' + crypto.randomBytes(16).toString('hex');
  const child = spawn(bin, ['--port', String(port), '--http-port', '0'], {
    cwd: ROOT,
    env: Object.assign({}, process.env, { JWT_SECRET: secret }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = [];
  const keep = (chunk) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      tail.push(line);
      if (tail.length > 400) tail.shift();
    }
  };
  const killOnExit = () => { try { child.kill('SIGKILL'); } catch (_) { /* gone */ } };
  process.on('exit', killOnExit);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const urls = await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error('the local stack did not start within ' +
      (o.startTimeoutMs || 60000) + ' ms:\n' + tail.slice(-40).join('\n'))), o.startTimeoutMs || 60000);
    child.stdout.on('data', (c) => {
      keep(c);
      buf += c.toString('utf8');
      const ws = /WebSocket:\s+(ws:\/\/\S+)/.exec(buf);
      const http = /HTTP API:\s+(http:\/\/\S+)/.exec(buf);
      const wechat = /Fake WeChat API:\s+(http:\/\/\S+)/.exec(buf);
      if (ws && http && wechat) {
        clearTimeout(timer);
        buf = '';
        resolve({ wsUrl: ws[1], httpUrl: http[1], wechatUrl: wechat[1] });
      }
    });
    child.stderr.on('data', keep);
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`the local stack exited (${code ?? signal}) before it was up:\n` + tail.slice(-40).join('\n')));
    });
  });
  // Keep draining its output: a full pipe would block the stack.
  child.stdout.removeAllListeners('data');
  child.stdout.on('data', keep);

  const { wsUrl, httpUrl, wechatUrl } = urls;
  return {
    wsUrl,
    // The HTTP API (POST /login) and the fake WeChat API the functions use (the demo app).
    httpUrl,
    wechatUrl,
    demoApp: { appSid: 'wxdemo', appid: 'wx00000000000demo' },
    // A wx.login code (or a getPhoneNumber code) the fake WeChat API will redeem once.
    async wechatCode(kind, subject) {
      const phone = kind === 'phone';
      const r = await fetch(`${wechatUrl}/fake/${phone ? 'phone_code' : 'login_code'}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ appid: 'wx00000000000demo', [phone ? 'phone' : 'openid']: subject }),
      });
      const body = await r.json();
      if (!body.code) throw new Error('the fake WeChat API minted no code: ' + JSON.stringify(body));
      return body.code;
    },
    port,
    secret,
    // A token for `sub` in `app`; opts: {name, avatar, exp (epoch s), ttl (s, default 1 h)}.
    token(sub, app, opts) {
      const t = opts || {};
      const exp = t.exp !== undefined ? t.exp : Math.floor(Date.now() / 1000) + (t.ttl || 3600);
      const claims = { sub, app, exp };
      if (t.name) claims.name = t.name;
      if (t.avatar) claims.avatar = t.avatar;
      return mint(t.secret || secret, claims);
    },
    logs: () => tail.slice(),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 15000);
        await exited;
        clearTimeout(t);
      }
      process.removeListener('exit', killOnExit);
    },
    pid: child.pid,
  };
}

module.exports = { startStack, mint, ROOT };
