// The login page: wx.login → POST /login (login.js). With phone-number accounts
// (AccountIdentity=phone) a first login answers phone_required and the page shows WeChat's
// phone button; its code goes with the next login. On success getApp().startChat(result)
// creates the ChatClient (see the README) and the page opens the conversation list.
Page({
  data: { busy: false, phoneNeeded: false, error: '' },

  onLoad() {
    this.app = getApp();
    this.tryLogin();
  },

  tryLogin(phoneCode) {
    this.setData({ busy: true, error: '' });
    this.app.login.login({ phoneCode }).then((r) => {
      this.setData({ busy: false, phoneNeeded: false });
      this.app.startChat(r);
      wx.redirectTo({ url: '../conversations/index' });
    }, (e) => {
      if (e.code === 'phone_required') {
        this.setData({ busy: false, phoneNeeded: true });
      } else {
        const later = e.retryAfter ? `，请 ${e.retryAfter} 秒后重试` : '';
        this.setData({ busy: false, error: `登录失败（${e.code}）${later}` });
      }
    });
  },

  // <button open-type="getPhoneNumber">: e.detail.code, or no code when the user declined.
  onGetPhoneNumber(e) {
    const code = e && e.detail && e.detail.code;
    if (!code) {
      this.setData({ error: '需要验证手机号才能使用聊天' });
      return;
    }
    this.tryLogin(code);
  },

  onRetry() {
    this.tryLogin();
  },
});
