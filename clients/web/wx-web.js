// The few `wx` calls chat.js makes, on browser APIs, so the browser app runs the very client
// the mini-program ships (clients/miniprogram/chat.js) instead of a second one:
// - connectSocket → WebSocket. A browser cannot set headers on a WebSocket handshake, so the
//   `Authorization: Bearer` token chat.js passes goes into the query as `token` (the $connect
//   function accepts both; docs/protocol.md "Connecting").
// - uploadFile → fetch with a multipart form (the ticket's POST fields, then the file), the
//   way wx.uploadFile posts; `filePath` is a blob: URL (URL.createObjectURL of a picked file).
// - getFileInfo / getImageInfo → the blob's size / createImageBitmap.
// Every socket opened is kept in WxWeb.sockets while it is open: the end-to-end test closes
// them to check that the app reconnects by itself.
(function (root) {
  'use strict';

  var sockets = new Set();

  function connectSocket(o) {
    var url = o.url;
    var auth = o.header && (o.header.Authorization || o.header.authorization);
    if (auth) {
      url += (url.indexOf('?') >= 0 ? '&' : '?') + 'token=' + encodeURIComponent(String(auth).replace(/^Bearer\s+/i, ''));
    }
    var ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      if (o.fail) o.fail({ errMsg: 'connectSocket:fail ' + e.message });
      return null;
    }
    sockets.add(ws);
    var on = { open: [], message: [], close: [], error: [] };
    var fire = function (kind, arg) { on[kind].slice().forEach(function (fn) { fn(arg); }); };
    ws.onopen = function () { fire('open', {}); };
    ws.onmessage = function (e) { fire('message', { data: e.data }); };
    ws.onerror = function () { fire('error', { errMsg: 'WebSocket error' }); };
    ws.onclose = function (e) {
      sockets.delete(ws);
      fire('close', { code: e.code, reason: e.reason });
    };
    return {
      onOpen: function (fn) { on.open.push(fn); },
      onMessage: function (fn) { on.message.push(fn); },
      onClose: function (fn) { on.close.push(fn); },
      onError: function (fn) { on.error.push(fn); },
      send: function (a) {
        try {
          ws.send(a.data);
          if (a.success) a.success({});
        } catch (e) {
          if (a.fail) a.fail({ errMsg: 'sendSocketMessage:fail ' + e.message });
        }
      },
      close: function (a) {
        // Browsers accept 1000 or 3000–4999 from a page.
        var code = a && (a.code === 1000 || (a.code >= 3000 && a.code <= 4999)) ? a.code : 1000;
        try { ws.close(code, a && a.reason ? String(a.reason).slice(0, 100) : undefined); } catch (e) { /* closed */ }
      },
    };
  }

  function blobOf(path) {
    return fetch(path).then(function (r) {
      if (!r.ok) throw new Error('cannot read ' + path);
      return r.blob();
    });
  }

  function uploadFile(o) {
    var ctl = new AbortController();
    var timer = o.timeout ? setTimeout(function () { ctl.abort(); }, o.timeout) : null;
    blobOf(o.filePath)
      .then(function (blob) {
        var form = new FormData();
        var fields = o.formData || {};
        Object.keys(fields).forEach(function (k) { form.append(k, fields[k]); });
        form.append(o.name || 'file', blob); // S3 ignores every field after the file
        return fetch(o.url, { method: 'POST', body: form, signal: ctl.signal });
      })
      .then(function (r) {
        return r.text().then(function (body) { o.success({ statusCode: r.status, data: body }); });
      })
      .catch(function (e) { o.fail({ errMsg: 'uploadFile:fail ' + (e && e.message) }); })
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  function getFileInfo(o) {
    blobOf(o.filePath).then(function (b) { o.success({ size: b.size }); }, function (e) { o.fail({ errMsg: e.message }); });
  }

  function getImageInfo(o) {
    blobOf(o.src)
      .then(function (b) { return createImageBitmap(b); })
      .then(function (bmp) { o.success({ width: bmp.width, height: bmp.height }); }, function (e) { o.fail({ errMsg: String(e) }); });
  }

  root.WxWeb = { connectSocket: connectSocket, uploadFile: uploadFile, getFileInfo: getFileInfo, getImageInfo: getImageInfo, sockets: sockets };
})(typeof globalThis !== 'undefined' ? globalThis : this);
