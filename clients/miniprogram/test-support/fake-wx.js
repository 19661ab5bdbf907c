// A `wx` for Node tests of chat.js: wx.connectSocket is a real WebSocket (npm `ws`),
// wx.uploadFile a real multipart/form-data POST (Node's fetch, FormData, Blob) of a file read
// from disk, wx.getFileInfo / wx.getImageInfo read the disk. Loopback only: any other host
// fails. The global handlers (wx.onSocketMessage & co.) throw, so a client that uses them
// fails its test.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');

function loopback(url) {
  const host = new URL(url).hostname;
  return host === '127.0.0.1' || host === 'localhost' || host === '[::1]';
}

function later(fn) {
  setImmediate(fn);
}

// One SocketTask. Test hooks: `sent` / `received` (frame texts), `filter(text)` (return
// false to hide an incoming frame from the client), `onSend(text)`, `drop()` (the network
// goes away: no close frame, the client sees 1006).
class SocketTask {
  constructor(o, wx) {
    this.url = o.url;
    this.header = Object.assign({}, o.header);
    this.sent = [];
    this.received = [];
    this.closed = false;
    this.filter = null;
    this.onSend = null;
    this.handlers = { open: [], message: [], close: [], error: [] };
    if (!loopback(o.url)) throw new Error('fake wx: not a loopback URL: ' + o.url);
    this.ws = new WebSocket(o.url, { headers: this.header, handshakeTimeout: 10000 });
    this.ws.on('open', () => this.emit('open', { header: {} }));
    this.ws.on('message', (data, binary) => {
      const text = binary ? data : data.toString('utf8');
      this.received.push(text);
      if (this.filter && this.filter(text, this) === false) return;
      this.emit('message', { data: text });
    });
    this.ws.on('error', (e) => this.emit('error', { errMsg: 'connectSocket:fail ' + e.message }));
    this.ws.on('close', (code, reason) => {
      this.closed = true;
      this.emit('close', { code, reason: reason.toString() });
    });
    wx.sockets.push(this);
    if (wx.onSocket) wx.onSocket(this);
  }

  emit(kind, payload) {
    for (const fn of this.handlers[kind]) fn(payload);
  }

  onOpen(fn) { this.handlers.open.push(fn); }
  onMessage(fn) { this.handlers.message.push(fn); }
  onClose(fn) { this.handlers.close.push(fn); }
  onError(fn) { this.handlers.error.push(fn); }

  send(o) {
    if (this.ws.readyState !== WebSocket.OPEN) {
      later(() => o.fail && o.fail({ errMsg: 'sendSocketMessage:fail WebSocket is not connected' }));
      return;
    }
    this.sent.push(o.data);
    this.ws.send(o.data, (err) => {
      if (err) return o.fail && o.fail({ errMsg: 'sendSocketMessage:fail ' + err.message });
      if (o.success) o.success({});
      if (this.onSend) this.onSend(o.data, this);
    });
  }

  close(o) {
    const opts = o || {};
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    else this.ws.close(opts.code || 1000, opts.reason || '');
    later(() => opts.success && opts.success({}));
  }

  drop() {
    this.ws.terminate();
  }

  get open() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  frames() {
    return this.sent.map((t) => JSON.parse(t));
  }
}

function createWx(options) {
  const o = options || {};
  const wx = {
    sockets: [],
    uploads: [],
    onSocket: o.onSocket || null,
    refuseConnect: false, // true: connectSocket fails as without a network
    connectSocket(args) {
      if (wx.refuseConnect) {
        // As WeChat does without a network: a task whose error and close come at once.
        const task = { handlers: { open: [], message: [], close: [], error: [] }, sent: [], url: args.url };
        ['Open', 'Message', 'Close', 'Error'].forEach((k) => { task['on' + k] = (fn) => task.handlers[k.toLowerCase()].push(fn); });
        task.send = (s) => later(() => s.fail && s.fail({ errMsg: 'not connected' }));
        task.close = () => {};
        later(() => {
          task.handlers.error.forEach((fn) => fn({ errMsg: 'connectSocket:fail network down' }));
          task.handlers.close.forEach((fn) => fn({ code: 1006, reason: 'network down' }));
        });
        wx.sockets.push(task);
        return task;
      }
      const task = new SocketTask(args, wx);
      later(() => args.success && args.success({ errMsg: 'connectSocket:ok' }));
      return task;
    },
    uploadFile(args) {
      const rec = { url: args.url, filePath: args.filePath, name: args.name, formData: Object.assign({}, args.formData) };
      wx.uploads.push(rec);
      const run = async () => {
        if (!loopback(args.url)) throw new Error('not a loopback URL: ' + args.url);
        const bytes = await fs.promises.readFile(args.filePath);
        const form = new FormData();
        for (const [k, v] of Object.entries(args.formData || {})) form.append(k, String(v));
        form.append(args.name, new Blob([bytes]), path.basename(args.filePath));
        const r = await fetch(args.url, {
          method: 'POST', body: form, headers: args.header || {},
          signal: AbortSignal.timeout(args.timeout || 60000),
        });
        const data = await r.text();
        rec.statusCode = r.status;
        if (args.success) args.success({ statusCode: r.status, data, header: Object.fromEntries(r.headers) });
      };
      run().catch((e) => {
        rec.error = e.message;
        if (args.fail) args.fail({ errMsg: 'uploadFile:fail ' + e.message });
      });
      return { abort() {}, onProgressUpdate() {}, offProgressUpdate() {} };
    },
    // wx.login: the code comes from options.loginCode() (the tests mint it at the fake WeChat
    // API for the openid they play); none configured fails as WeChat would offline.
    logins: 0,
    login(args) {
      wx.logins += 1;
      const mint = o.loginCode ? Promise.resolve().then(() => o.loginCode()) : Promise.reject(new Error('no loginCode'));
      mint.then((code) => args.success && args.success({ code, errMsg: 'login:ok' }),
        (e) => args.fail && args.fail({ errMsg: 'login:fail ' + e.message }));
    },
    // wx.request over fetch, loopback only: JSON in (an object `data` is sent as JSON), JSON
    // out when dataType is json (WeChat's default), as the real one answers.
    requests: [],
    request(args) {
      const rec = { url: args.url, method: args.method || 'GET', data: args.data };
      wx.requests.push(rec);
      const run = async () => {
        if (!loopback(args.url)) throw new Error('not a loopback URL: ' + args.url);
        const body = args.data === undefined ? undefined
          : typeof args.data === 'string' ? args.data : JSON.stringify(args.data);
        const r = await fetch(args.url, {
          method: rec.method, body, headers: args.header || {},
          signal: AbortSignal.timeout(args.timeout || 60000),
        });
        let data = await r.text();
        if ((args.dataType || 'json') === 'json') {
          try { data = JSON.parse(data); } catch (_) { /* WeChat leaves it a string */ }
        }
        rec.statusCode = r.status;
        if (args.success) args.success({ statusCode: r.status, data, header: Object.fromEntries(r.headers), errMsg: 'request:ok' });
      };
      run().catch((e) => {
        rec.error = e.message;
        if (args.fail) args.fail({ errMsg: 'request:fail ' + e.message });
      });
      return { abort() {} };
    },
    getFileInfo(args) {
      fs.stat(args.filePath, (err, st) => {
        if (err) return args.fail && args.fail({ errMsg: 'getFileInfo:fail ' + err.message });
        args.success && args.success({ size: st.size, errMsg: 'getFileInfo:ok' });
      });
    },
    getImageInfo(args) {
      fs.readFile(args.src, (err, b) => {
        // PNG only: the width and height of the IHDR chunk.
        if (err || b.length < 24 || b.readUInt32BE(0) !== 0x89504e47) {
          return args.fail && args.fail({ errMsg: 'getImageInfo:fail' });
        }
        args.success && args.success({ width: b.readUInt32BE(16), height: b.readUInt32BE(20), path: args.src, type: 'png' });
      });
    },
    onSocketMessage() { throw new Error('use the SocketTask, not wx.onSocketMessage'); },
    onSocketOpen() { throw new Error('use the SocketTask, not wx.onSocketOpen'); },
    onSocketClose() { throw new Error('use the SocketTask, not wx.onSocketClose'); },
    onSocketError() { throw new Error('use the SocketTask, not wx.onSocketError'); },
    sendSocketMessage() { throw new Error('use the SocketTask, not wx.sendSocketMessage'); },
    // Sockets of this wx whose WebSocket is open.
    openSockets() {
      return wx.sockets.filter((s) => s.ws && s.ws.readyState === WebSocket.OPEN);
    },
    // Closes every socket at once (end of a test).
    closeAll() {
      for (const s of wx.sockets) if (s.ws) s.ws.terminate();
    },
  };
  return wx;
}

module.exports = { createWx };
