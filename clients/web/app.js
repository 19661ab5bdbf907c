// The browser chat app: one user connection (docs/protocol.md) through the mini-program's own
// client (chat.js, with wx-web.js standing in for wx) and the same view functions as its
// example pages (view.js), so both clients behave alike and both are tested.
//
// Opened with the link the local stack prints:
//   /#userphone=<account>&app_sid=<app>&token=<JWT>[&name=<display name>][&stage=prod]
// The fragment never reaches a server; the app keeps it in sessionStorage (this tab only) and
// takes it out of the address bar. There are no token fields on screen: a real app gets the
// token from its own login service (README "Deploy").
(function () {
  'use strict';

  var V = window.WxChatView;
  // view.js speaks Chinese, as a mini-program would; this page is for evaluators first.
  Object.assign(V.TEXT, {
    image: '[Image]', video: '[Video]',
    recalledMine: 'You recalled a message', recalledTheirs: 'Message recalled',
    typing: 'typing…', read: 'Read', sent: 'Sent', pending: 'Sending…',
    failed: 'Not sent. Click to retry',
    imageTooLarge: 'The image is too large', videoTooLarge: 'The video is too large',
    recallWindowPassed: 'Too late to recall this message', notYours: 'You can only recall your own messages',
    timeout: 'Network trouble: the message was not sent', uploadFailed: 'The upload failed',
    unsupportedType: 'This kind of file cannot be sent', closed: 'Connection closed',
    connecting: 'Connecting…', offline: 'Offline, reconnecting…', tooLong: 'The message is too long',
    fallback: 'Not sent',
    blocked: 'This message was removed: it broke the content rules',
    contentBlocked: 'Not sent: it breaks the content rules',
    editAndResend: 'Not sent (content rules). Click to edit',
    moderationUnavailable: 'Cannot send right now; try again in a moment',
    loginRequired: 'Log in to send messages',
  });
  var TYPING_SHOWN_MS = 3000;
  var $ = function (id) { return document.getElementById(id); };
  var el = function (tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] === null || attrs[k] === undefined || attrs[k] === false) return;
      if (k === 'class') e.className = attrs[k];
      else e.setAttribute(k, attrs[k] === true ? '' : attrs[k]);
    });
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  };

  // ------------------------------------------------------------ who am I

  function session() {
    var src = location.hash.length > 1 ? location.hash.slice(1) : location.search.slice(1);
    var p = new URLSearchParams(src);
    if (p.get('userphone') && p.get('app_sid') && p.get('token')) {
      var s = {
        userphone: p.get('userphone'), app_sid: p.get('app_sid'), token: p.get('token'),
        name: p.get('name') || '', stage: p.get('stage') || 'prod',
      };
      sessionStorage.setItem('chat-session', JSON.stringify(s));
      history.replaceState(null, '', location.pathname);
      return s;
    }
    try { return JSON.parse(sessionStorage.getItem('chat-session')); } catch (e) { return null; }
  }

  var me = session();
  if (!me) {
    $('signin').hidden = false;
    $('app').hidden = true;
    return;
  }
  document.title = (me.name || me.userphone) + ' — chat';
  $('me').textContent = me.name || me.userphone;
  var wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/' + me.stage;
  var chat = new window.WxChat.ChatClient({
    url: wsUrl, userphone: me.userphone, appSid: me.app_sid, token: me.token, wx: window.WxWeb,
  });

  // ------------------------------------------------------------ state

  var st = {
    list: { list: [], cursor: null, hasMore: false },
    peer: null, // the open conversation
    peerName: '',
    conv: { rows: [], cursor: null, hasMore: false },
    peerReadId: null,
    broken: {}, // bubble keys whose thumbnail failed to load: show the original
    outgoing: {}, // client_msg_id -> {kind, payload, opts}: what a retry sends again
    typingUntil: {}, // peer -> ms
  };

  // ------------------------------------------------------------ toasts and status

  var toastTimer = null;
  function toast(text) {
    var t = $('toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.hidden = true; }, 4000);
  }

  chat.on('state', function (s) {
    var status = $('status');
    status.dataset.state = s.state;
    status.textContent = s.state === 'open' ? 'online' : s.state === 'connecting' ? V.TEXT.connecting : V.TEXT.offline;
  });
  chat.on('error', function (e) {
    if (e && e.code === 'token_expired') toast('Your session expired: open a new link from the local stack.');
    else if (e && e.code !== 'listener') toast(V.errorText(e));
    else console.error(e);
  });

  // ------------------------------------------------------------ the conversation list

  function renderList() {
    var ul = $('list');
    ul.textContent = '';
    var items = st.list.list;
    items.forEach(function (entry) {
      var item = V.listItemFor(entry, { me: me.userphone });
      var typing = (st.typingUntil[entry.peer] || 0) > Date.now();
      var li = el('li', {
        'data-testid': 'conversation', 'data-peer': entry.peer, tabindex: 0,
        class: entry.peer === st.peer ? 'open' : null, 'aria-current': entry.peer === st.peer ? 'true' : null,
      });
      li.appendChild(el('span', { class: 'avatar', 'aria-hidden': 'true' }, item.name.slice(0, 1).toUpperCase()));
      var body = el('div', { class: 'entry' });
      var top = el('div', { class: 'top' });
      top.appendChild(el('b', null, item.name));
      top.appendChild(el('time', null, item.time));
      body.appendChild(top);
      var bottom = el('div', { class: 'bottom' });
      bottom.appendChild(el('span', { class: typing ? 'preview typing' : 'preview' }, typing ? V.TEXT.typing : item.preview));
      if (item.badge) bottom.appendChild(el('span', { class: 'badge', 'data-testid': 'unread', 'aria-label': item.unread + ' unread' }, item.badge));
      body.appendChild(bottom);
      li.appendChild(body);
      li.onclick = function () { openConversation(entry.peer); };
      li.onkeydown = function (e) { if (e.key === 'Enter') openConversation(entry.peer); };
      ul.appendChild(li);
    });
    $('empty-list').hidden = items.length > 0;
    $('more-conversations').hidden = !st.list.hasMore;
  }

  function entryOf(peer) {
    return st.list.list.filter(function (e) { return e.peer === peer; })[0] || null;
  }

  function updateList(list) {
    st.list = Object.assign({}, st.list, { list: list });
    var entry = st.peer && entryOf(st.peer);
    if (entry && entry.peername && entry.peername !== st.peerName) {
      st.peerName = entry.peername; // a chat started by account: the name comes with the first row
      $('peer-name').textContent = st.peerName;
    }
    if (entry && entry.peer_read_id && (!st.peerReadId || entry.peer_read_id > st.peerReadId)) {
      st.peerReadId = entry.peer_read_id;
      renderChat();
    }
    renderList();
  }

  chat.on('conversations', function (ev) {
    st.list = V.mergeConversations(st.list, ev);
    updateList(st.list.list);
  });
  chat.on('conversation', function (entry) { updateList(V.applyEntry(st.list.list, entry)); });
  chat.on('message', function (ev) {
    updateList(V.applyMessageToList(st.list.list, ev));
    if (ev.peer !== st.peer) return;
    if (ev.message && ev.message.userphone === st.peer) {
      st.typingUntil[st.peer] = 0; // what was being typed arrived
      renderTyping();
    }
    st.conv = V.applyMessage(st.conv, ev);
    renderChat(true);
    readAll();
  });
  chat.on('recall', function (ev) {
    updateList(V.applyRecallToList(st.list.list, ev));
    if (ev.peer === st.peer) {
      st.conv.rows = V.applyRecall(st.conv.rows, ev.id);
      renderChat();
    }
  });
  chat.on('blocked', function (ev) {
    updateList(V.applyBlockedToList(st.list.list, ev));
    if (ev.peer === st.peer) {
      delete st.broken[ev.id]; // its picture is gone for good: no fallback to the original either
      st.conv.rows = V.applyBlocked(st.conv.rows, ev.id);
      renderChat();
    }
  });
  chat.on('read', function (ev) {
    updateList(V.applyReadToList(st.list.list, ev));
    if (ev.peer === st.peer && (!st.peerReadId || ev.id > st.peerReadId)) {
      st.peerReadId = ev.id;
      renderChat();
    }
  });
  chat.on('typing', function (ev) {
    st.typingUntil[ev.peer] = Date.now() + TYPING_SHOWN_MS;
    renderTyping();
    renderList();
    setTimeout(function () { renderTyping(); renderList(); }, TYPING_SHOWN_MS + 50);
  });

  $('more-conversations').onclick = function () {
    if (st.list.hasMore) chat.listConversations({ before: st.list.cursor }).catch(function () {});
  };
  $('new-chat').onsubmit = function (e) {
    e.preventDefault();
    var input = $('new-chat-peer');
    var peer = input.value.trim();
    if (!peer || peer === me.userphone) return;
    input.value = '';
    openConversation(peer);
  };

  // ------------------------------------------------------------ one conversation

  function openConversation(peer) {
    if (st.peer === peer) return;
    if (st.peer) chat.closeConversation(st.peer);
    var entry = entryOf(peer);
    st.peer = peer;
    st.peerName = (entry && entry.peername) || peer;
    st.peerReadId = (entry && entry.peer_read_id) || null;
    st.conv = { rows: [], cursor: null, hasMore: false };
    st.broken = {};
    $('chat').hidden = false;
    $('no-chat').hidden = true;
    $('peer-name').textContent = st.peerName;
    renderChat();
    renderList();
    renderTyping();
    chat.history(peer).catch(function (e) { toast(V.errorText(e)); });
    $('composer').focus();
  }

  chat.on('history', function (ev) {
    if (ev.peer !== st.peer) return;
    st.conv = V.applyHistory(st.conv, ev);
    renderChat(!ev.before);
    readAll();
  });

  // Everything on screen from the peer is read, while this tab is visible.
  function readAll() {
    if (!st.peer || document.visibilityState !== 'visible') return;
    var newest = V.newestFrom(st.conv.rows, st.peer);
    if (newest) chat.markRead(st.peer, newest.id).catch(function () {});
  }
  document.addEventListener('visibilitychange', readAll);

  function renderTyping() {
    $('typing').hidden = !(st.peer && (st.typingUntil[st.peer] || 0) > Date.now());
  }

  function renderChat(toBottom) {
    var log = $('log');
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    var rows = $('rows');
    rows.textContent = '';
    $('older').hidden = !st.conv.hasMore;
    var items = V.chatItems(st.conv.rows, { me: me.userphone, peerReadId: st.peerReadId, broken: st.broken });
    items.forEach(function (b) {
      if (b.flagtime && b.timeLabel) rows.appendChild(el('div', { class: 'sep' }, b.timeLabel));
      rows.appendChild(bubble(b));
    });
    if (toBottom || atBottom) log.scrollTop = log.scrollHeight;
  }

  function bubble(b) {
    var row = el('div', {
      'data-testid': 'message', 'data-id': b.id || '', 'data-status': b.status || null,
      'data-kind': b.kind, class: 'row' + (b.mine ? ' mine' : ''),
    });
    var box = el('div', { class: 'bubble ' + b.kind });
    if (b.kind === 'image') {
      var a = el('a', { href: b.url, target: '_blank', rel: 'noopener' });
      var img = el('img', { src: b.src, alt: 'image', width: b.box.width, height: b.box.height, referrerpolicy: 'no-referrer' });
      img.onerror = function () {
        if (!st.broken[b.key] && b.src !== b.fallback) {
          st.broken[b.key] = true; // the thumbnail is not written yet: show the original
          renderChat();
        }
      };
      a.appendChild(img);
      box.appendChild(a);
    } else if (b.kind === 'video') {
      var v = el('video', { src: b.url, poster: b.poster || null, controls: true, preload: 'metadata', width: b.box.width, height: b.box.height, referrerpolicy: 'no-referrer' });
      box.appendChild(v);
    } else {
      box.textContent = b.text;
    }
    row.appendChild(box);
    if (b.mine) {
      var meta = el('div', { class: 'meta' });
      var status = el('span', { class: 'status ' + b.status, 'data-testid': 'message-status' }, b.statusText);
      if (b.status === 'failed') {
        status.setAttribute('role', 'button');
        status.onclick = function () { retry(b.client_msg_id); };
      }
      if (b.status === 'blocked') {
        // Refused by content security: the text goes back to the composer, and the next send
        // carries the edit with the same client_msg_id.
        status.setAttribute('role', 'button');
        status.onclick = function () { edit(b.client_msg_id); };
      }
      meta.appendChild(status);
      if (b.id && b.kind !== 'recalled' && b.kind !== 'blocked') {
        var recall = el('button', { class: 'recall', 'data-testid': 'recall', title: 'Take this message back' }, 'Recall');
        recall.onclick = function () {
          chat.recall(st.peer, b.id).catch(function (e) { toast(V.errorText(e)); });
        };
        meta.appendChild(recall);
      }
      row.appendChild(meta);
    }
    return row;
  }

  $('older').onclick = function () {
    if (st.conv.hasMore && st.peer) chat.history(st.peer, { before: st.conv.cursor }).catch(function () {});
  };

  // ------------------------------------------------------------ sending

  // Shows the message as pending, sends it (chat.js resends it with the same client_msg_id
  // across reconnects), then shows the stored row, or "not sent" with a retry.
  function send(out, clientMsgId) {
    var peer = st.peer;
    var id = clientMsgId || window.WxChat.newId('m');
    st.outgoing[id] = out;
    if (clientMsgId) {
      st.conv.rows = V.setFailed(st.conv.rows, id, false, null, out.kind === 0 ? out.payload : undefined);
    } else {
      st.conv.rows = st.conv.rows.concat([V.pendingRow({
        clientMsgId: id, me: me.userphone, peer: peer, chatType: out.kind, now: Date.now(),
        content: out.kind === 0 ? out.payload : '',
        localPath: out.kind ? out.payload.tempFilePath : null,
        posterPath: out.opts && out.opts.poster ? out.opts.poster.tempFilePath : null,
      })]);
    }
    renderChat(true);
    var opts = Object.assign({ clientMsgId: id }, out.opts);
    var sending = out.kind === 0 ? chat.sendText(peer, out.payload, opts)
      : out.kind === 1 ? chat.sendImage(peer, out.payload, opts) : chat.sendVideo(peer, out.payload, opts);
    sending.then(function (row) {
      delete st.outgoing[id];
      if (st.peer !== peer) return;
      st.conv = V.applyMessage(st.conv, { message: row });
      renderChat();
    }, function (err) {
      if (st.peer === peer) {
        st.conv.rows = V.setFailed(st.conv.rows, id, true, err);
        renderChat();
      }
      toast(V.errorText(err, out.kind));
    });
  }

  function retry(clientMsgId) {
    var out = st.outgoing[clientMsgId];
    if (out) send(out, clientMsgId);
  }

  function edit(clientMsgId) {
    var out = st.outgoing[clientMsgId];
    if (!out) return;
    st.editing = clientMsgId;
    $('composer').value = out.payload;
    $('composer').focus();
  }

  $('composer-form').onsubmit = function (e) {
    e.preventDefault();
    var input = $('composer');
    var text = input.value;
    if (!text.trim() || !st.peer) return;
    input.value = '';
    var editing = st.editing && st.outgoing[st.editing] ? st.editing : undefined;
    st.editing = null;
    send({ kind: 0, payload: text }, editing);
  };
  $('composer').oninput = function () {
    if (st.peer && $('composer').value) chat.typing(st.peer);
  };

  // A picked file becomes what wx.chooseMedia would hand a mini-program: a temp path (here a
  // blob: URL), its size, type and dimensions; a video also gets a poster frame.
  $('file').onchange = function () {
    var input = $('file');
    var file = input.files && input.files[0];
    input.value = '';
    if (!file || !st.peer) return;
    var isVideo = file.type.indexOf('video/') === 0;
    var payload = { tempFilePath: URL.createObjectURL(file), size: file.size, contentType: file.type || undefined };
    if (!isVideo) {
      dimensions(file).then(function (d) { send({ kind: 1, payload: Object.assign(payload, d) }); });
    } else {
      posterOf(file).then(function (poster) {
        send({ kind: 2, payload: payload, opts: poster ? { poster: poster } : {} });
      });
    }
  };

  function dimensions(blob) {
    if (!window.createImageBitmap) return Promise.resolve({});
    return createImageBitmap(blob).then(function (b) { return { width: b.width, height: b.height }; }, function () { return {}; });
  }

  // A frame of the video as a JPEG, like wx.chooseMedia's thumbTempFilePath; null if the
  // browser cannot decode it (the video is then sent without a poster).
  function posterOf(file) {
    return new Promise(function (resolve) {
      var v = document.createElement('video');
      var done = function (x) { clearTimeout(timer); resolve(x); };
      var timer = setTimeout(function () { done(null); }, 5000);
      v.muted = true;
      v.preload = 'auto';
      v.src = URL.createObjectURL(file);
      v.onerror = function () { done(null); };
      v.onloadeddata = function () {
        var c = document.createElement('canvas');
        c.width = v.videoWidth;
        c.height = v.videoHeight;
        if (!c.width || !c.height) return done(null);
        c.getContext('2d').drawImage(v, 0, 0);
        c.toBlob(function (b) {
          if (!b) return done(null);
          done({ tempFilePath: URL.createObjectURL(b), size: b.size, contentType: 'image/jpeg', width: c.width, height: c.height });
        }, 'image/jpeg', 0.8);
      };
    });
  }

  // ------------------------------------------------------------ go

  window.chatApp = { client: chat, state: st }; // for the console and the browser test
  renderList();
  chat.connect();
})();
