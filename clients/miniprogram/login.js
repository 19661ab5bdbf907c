// Logs a WeChat user in to the chat (docs/protocol.md, "Login"): wx.login gives a code, one
// wx.request to the stack's POST /login turns it into the chat token, and for phone-number
// accounts (AccountIdentity=phone) the getPhoneNumber button's code comes along the first time.
//
//   const { Login } = require('./login')
//   const login = new Login({ url: HTTP_API_URL + '/login', appSid: 'wxdemo' })
//   login.login().then(({ token, account, expiresAt }) => ...)
//     .catch((e) => { if (e.code === 'phone_required') /* show the phone button */ })
//   // from <button open-type="getPhoneNumber" bindgetphonenumber="onPhone">:
//   onPhone(e) { login.login({ phoneCode: e.detail.code }) }
//   // and as ChatClient's getToken, so an expired token is replaced without the user:
//   new ChatClient({ ..., token, getToken: () => login.getToken() })
//
// ES5 plus Promise, like chat.js. Every failure is a LoginError with `code` (the server's
// `error`, or `network`, `wx_login`, `bad_answer`), `message`, `status` and `retryAfter` (s).
'use strict';

function LoginError(code, message, extra) {
  var e = new Error(message || code);
  e.name = 'LoginError';
  e.code = code;
  e.status = (extra && extra.status) || 0;
  e.retryAfter = (extra && extra.retryAfter) || 0;
  return e;
}

// o: { url: '<HttpApiUrl>/login', appSid, name?: display name sent with every login,
//      timeoutMs?: 10000, wx?: the wx object (default: the global one) }
function Login(o) {
  if (!o || !o.url || !o.appSid) throw new Error('Login needs url and appSid');
  this.url = o.url;
  this.appSid = o.appSid;
  this.name = o.name || null;
  this.timeoutMs = o.timeoutMs || 10000;
  this.wx = o.wx || (typeof wx !== 'undefined' ? wx : null); // eslint-disable-line no-undef
  if (!this.wx) throw new Error('Login needs wx');
  // The last success: { token, expiresAt, account }.
  this.last = null;
}

Login.prototype._code = function () {
  var w = this.wx;
  return new Promise(function (resolve, reject) {
    w.login({
      success: function (r) {
        if (r && r.code) resolve(r.code);
        else reject(LoginError('wx_login', 'wx.login gave no code'));
      },
      fail: function (e) {
        reject(LoginError('wx_login', 'wx.login failed: ' + ((e && e.errMsg) || 'unknown')));
      },
    });
  });
};

Login.prototype._post = function (body) {
  var w = this.wx;
  var url = this.url;
  var timeout = this.timeoutMs;
  return new Promise(function (resolve, reject) {
    w.request({
      url: url,
      method: 'POST',
      data: body,
      header: { 'content-type': 'application/json' },
      dataType: 'json',
      timeout: timeout,
      success: function (r) {
        var data = r.data;
        if (typeof data === 'string') {
          try { data = JSON.parse(data); } catch (_) { data = null; }
        }
        var header = r.header || {};
        var retry = parseInt(header['Retry-After'] || header['retry-after'] || '0', 10) || 0;
        if (r.statusCode === 200 && data && typeof data.token === 'string') {
          resolve({ token: data.token, expiresAt: data.expires_at, account: data.account });
        } else if (data && data.error) {
          reject(LoginError(data.error, data.message, { status: r.statusCode, retryAfter: retry }));
        } else {
          reject(LoginError('bad_answer', 'the login answered ' + r.statusCode, { status: r.statusCode, retryAfter: retry }));
        }
      },
      fail: function (e) {
        reject(LoginError('network', 'the login request failed: ' + ((e && e.errMsg) || 'unknown')));
      },
    });
  });
};

// Logs in. opts: { phoneCode?: the getPhoneNumber button's e.detail.code, name? }.
// Resolves { token, expiresAt, account }; rejects with a LoginError (`phone_required`: show
// the phone button and call again with its code).
Login.prototype.login = function (opts) {
  var self = this;
  var o = opts || {};
  return this._code().then(function (code) {
    var body = { app_sid: self.appSid, code: code };
    if (o.phoneCode) body.phone_code = o.phoneCode;
    var name = o.name || self.name;
    if (name) body.name = name;
    return self._post(body);
  }).then(function (r) {
    self.last = r;
    return r;
  });
};

// A fresh token (ChatClient's getToken): logs in again with wx.login alone; the number a phone
// login verified is remembered by the server.
Login.prototype.getToken = function () {
  return this.login().then(function (r) { return r.token; });
};

var api = { Login: Login, LoginError: LoginError };
if (typeof module !== 'undefined' && module.exports) module.exports = api;
else if (typeof window !== 'undefined') window.WxChatLogin = api;
