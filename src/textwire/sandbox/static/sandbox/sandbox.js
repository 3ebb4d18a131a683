// textwire sandbox: the phone page. Plain JavaScript, no build step.
//
// State comes from the JSON endpoints under /sandbox/api/ and live updates
// from the server-sent events at /sandbox/api/events. Each (re)connect of the
// event stream reloads the shown thread, so nothing missed while offline stays
// missing.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("sandbox-config").textContent);
  var API = "/sandbox/api";

  var phones = [];            // virtual phones, in the server's order
  var current = null;         // E.164 of the phone shown
  var messages = {};          // sid -> message, of the shown thread
  var unread = {};            // phone -> count of new messages while not shown
  var attached = [];          // File objects to send with the next message
  var seen = {};              // sids already shown or counted as unread
  var waiting = [];           // the bot's messages to the shown phone, for later

  var els = {
    phones: document.getElementById("phones"),
    thread: document.getElementById("thread"),
    empty: document.getElementById("thread-empty"),
    sub: document.getElementById("thread-sub"),
    form: document.getElementById("composer"),
    body: document.getElementById("body"),
    picture: document.getElementById("picture"),
    attachments: document.getElementById("attachments"),
    counter: document.getElementById("counter"),
    error: document.getElementById("send-error"),
    send: document.getElementById("send"),
    live: document.getElementById("live"),
    account: document.getElementById("account"),
    broadcast: document.getElementById("broadcast-form"),
    broadcastResult: document.getElementById("broadcast-result"),
  };

  // -- helpers ----------------------------------------------------------------

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      if (child) node.appendChild(child);
    });
    return node;
  }

  function phoneUrl(number) {
    return API + "/phones/" + encodeURIComponent(number) + "/messages";
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || r.statusText);
        return data;
      });
    });
  }

  function timeOf(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  // -- phones -----------------------------------------------------------------

  function renderPhones() {
    els.phones.textContent = "";
    phones.forEach(function (phone) {
      var badge = unread[phone.number]
        ? el("span", { className: "badge", text: String(unread[phone.number]) })
        : null;
      var tags = [el("span", { className: "country", text: phone.country }),
                  el("span", { text: phone.country_name })];
      if (!phone.mms) tags.push(el("span", { className: "tag", text: "no MMS" }));
      if (phone.fate !== "delivered") tags.push(el("span", { className: "tag tag-warn", text: phone.fate }));
      var button = el("button", {
        type: "button",
        role: "tab",
        className: "phone" + (phone.number === current ? " active" : ""),
        "aria-selected": phone.number === current ? "true" : "false",
        "data-number": phone.number,
        "data-testid": "phone-" + phone.number,
        title: phone.number,
      }, [
        el("span", { className: "phone-label", text: phone.label }, [badge]),
        el("span", { className: "phone-display", text: phone.display }),
        el("span", { className: "phone-meta" }, tags),
      ]);
      button.addEventListener("click", function () { select(phone.number); });
      els.phones.appendChild(button);
    });
  }

  function phoneByNumber(number) {
    for (var i = 0; i < phones.length; i++) if (phones[i].number === number) return phones[i];
    return null;
  }

  function select(number) {
    if (number === current) return;
    current = number;
    unread[number] = 0;
    messages = {};
    waiting = [];
    stickToBottom = true;
    var phone = phoneByNumber(number);
    els.sub.textContent = phone ? phone.label + " · " + phone.display : number;
    try { history.replaceState(null, "", "#" + encodeURIComponent(number)); } catch (e) { /* file: */ }
    renderPhones();
    renderThread();
    loadThread();
    els.body.focus();
  }

  // -- thread -----------------------------------------------------------------

  function loadThread() {
    var number = current;
    if (!number) return Promise.resolve();
    return getJSON(phoneUrl(number)).then(function (data) {
      if (number !== current) return;
      data.messages.forEach(function (m) {
        seen[m.sid] = true;
        upsert(m);
      });
      renderThread();
      loadScheduled();
    }).catch(function (err) { showError(err.message); });
  }

  // The bot's messages that wait for their time (or for quiet hours to end):
  // shown as "scheduled for …" until they arrive as ordinary messages.
  function loadScheduled() {
    var number = current;
    if (!number || !config.broadcasts) return Promise.resolve();
    return getJSON(API + "/phones/" + encodeURIComponent(number) + "/scheduled")
      .then(function (data) {
        if (number !== current) return;
        var before = JSON.stringify(waiting);
        waiting = data.scheduled;
        if (JSON.stringify(waiting) !== before) renderThread();
      }).catch(function () { /* shown again at the next reload */ });
  }

  function scheduledBubble(s) {
    var when = new Date(s.send_at);
    var text = "scheduled for " + when.toLocaleString([], {
      weekday: "short", hour: "2-digit", minute: "2-digit",
    }) + (s.quiet_hours ? " (after quiet hours)" : "");
    var parts = [];
    if (s.body) parts.push(el("div", { className: "text" }, [linkify(s.body)]));
    (s.media || []).forEach(function (url) {
      parts.push(el("div", { className: "text muted", text: "[picture] " + url }));
    });
    return el("div", {
      className: "row theirs scheduled",
      "data-testid": "scheduled-message",
      "data-outbox": String(s.id),
    }, [
      el("div", { className: "bubble" }, parts),
      el("div", { className: "meta", "data-testid": "scheduled-for", text: text }),
    ]);
  }

  // Keep the freshest copy of a message: a slow reload never undoes a status.
  function upsert(message) {
    var old = messages[message.sid];
    if (old && (old.rank || 0) > (message.rank || 0)) return false;
    messages[message.sid] = message;
    return true;
  }

  function sorted() {
    return Object.keys(messages).map(function (sid) { return messages[sid]; })
      .sort(function (a, b) {
        return a.date_created < b.date_created ? -1 : a.date_created > b.date_created ? 1 : 0;
      });
  }

  // Links in a text (pictures sent as links to a phone without MMS) open.
  function linkify(text) {
    var fragment = document.createDocumentFragment();
    var pattern = /https?:\/\/[^\s<>"]+/g;
    var last = 0;
    var match;
    while ((match = pattern.exec(text))) {
      if (match.index > last) fragment.appendChild(document.createTextNode(text.slice(last, match.index)));
      fragment.appendChild(el("a", { href: match[0], target: "_blank", rel: "noopener", text: match[0] }));
      last = pattern.lastIndex;
    }
    if (last < text.length) fragment.appendChild(document.createTextNode(text.slice(last)));
    return fragment;
  }

  function statusLine(m) {
    var line = el("div", {
      className: "status status-" + m.status,
      "data-testid": "status",
      "data-status": m.status,
    });
    var mark = { queued: "…", sending: "…", sent: "✓", delivered: "✓✓", read: "✓✓",
                 undelivered: "!", failed: "!" }[m.status] || "";
    line.appendChild(el("span", { className: "status-mark", text: mark }));
    line.appendChild(el("span", { className: "status-name", text: m.status }));
    if (m.error_code) {
      line.appendChild(el("span", {
        className: "status-error",
        "data-testid": "error-code",
        text: m.error_code + (m.reason ? " " + m.reason : ""),
        title: m.advice || m.error_message || "",
      }));
    }
    return line;
  }

  function bubble(m) {
    var mine = m.direction === "inbound";      // the phone sent it
    // Twilio's MMS Converter: no MMS to this country, so the phone gets an
    // SMS with a link to each picture instead of the pictures.
    var converted = !!m.converted;
    var media = converted ? [] : (m.media || []).map(function (item) {
      var img = el("img", { className: "media", src: item.url, alt: "picture", "data-testid": "media" });
      img.addEventListener("load", keepAtBottom);
      return el("a", { href: item.url, target: "_blank", rel: "noopener", className: "media-link" }, [img]);
    });
    var parts = [];
    if (media.length) parts.push(el("div", { className: "media-grid" + (media.length > 1 ? " multi" : "") }, media));
    if (m.body) parts.push(el("div", { className: "text" }, [linkify(m.body)]));
    if (converted && (m.media || []).length) {
      parts.push(el("div", { className: "text converted", "data-testid": "converted-media" },
        [linkify((m.media || []).map(function (item) { return item.url; }).join("\n"))]));
    }
    var row = el("div", {
      className: "row " + (mine ? "mine" : "theirs") + (media.length ? " has-media" : ""),
      "data-sid": m.sid,
      "data-direction": m.direction,
      "data-testid": mine ? "sent-message" : "received-message",
    }, [
      el("div", { className: "bubble" }, parts),
      mine
        ? el("div", { className: "meta", text: timeOf(m.date_created) + " · " + plural(m.num_segments, "segment") + " · " + m.encoding })
        : el("div", { className: "meta" }, [statusLine(m)]),
    ]);
    return row;
  }

  // Follow the conversation unless the person scrolled up to read.
  var stickToBottom = true;
  els.thread.addEventListener("scroll", function () {
    stickToBottom = els.thread.scrollHeight - els.thread.scrollTop - els.thread.clientHeight < 60;
  });

  function keepAtBottom() {
    if (stickToBottom) els.thread.scrollTop = els.thread.scrollHeight;
  }

  function renderThread() {
    var list = sorted();
    Array.prototype.slice.call(els.thread.querySelectorAll(".row")).forEach(function (node) {
      node.remove();
    });
    els.empty.hidden = list.length + waiting.length > 0;
    list.forEach(function (m) { els.thread.appendChild(bubble(m)); });
    waiting.forEach(function (s) { els.thread.appendChild(scheduledBubble(s)); });
    keepAtBottom();
  }

  // Only the bubble that changed is redrawn, so loaded pictures do not flicker.
  function applyMessage(m) {
    if (!m.phone) return;
    var unseen = !seen[m.sid];
    seen[m.sid] = true;
    if (m.phone !== current) {
      if (unseen) {
        unread[m.phone] = (unread[m.phone] || 0) + 1;
        renderPhones();
      }
      return;
    }
    var isNew = !messages[m.sid];
    // Converted to SMS by the carrier after the bubble was drawn: redraw it.
    var reshaped = !isNew && !!messages[m.sid].converted !== !!m.converted;
    if (!upsert(m)) return;
    if (isNew && m.direction !== "inbound") loadScheduled();
    var node = els.thread.querySelector('.row[data-sid="' + m.sid + '"]');
    if (node && !isNew && !reshaped) {
      var meta = node.querySelector(".meta");
      if (m.direction !== "inbound" && meta) {
        meta.textContent = "";
        meta.appendChild(statusLine(m));
        keepAtBottom();
      }
      return;
    }
    renderThread();
  }

  // -- composer ---------------------------------------------------------------

  var segmentTimer = null;
  var segmentSeq = 0;

  function updateCounter() {
    clearTimeout(segmentTimer);
    segmentTimer = setTimeout(function () {
      var seq = ++segmentSeq;
      getJSON(API + "/segments?body=" + encodeURIComponent(els.body.value)).then(function (info) {
        if (seq !== segmentSeq) return;
        var capacity = info.per_segment * info.segments;
        var text = info.encoding + " · " + info.characters + "/" + capacity + " · " +
          plural(info.segments, "segment");
        if (info.unicode_chars.length) {
          text += " · because of " + info.unicode_chars.slice(0, 5).join(" ");
        }
        if (info.too_long) text += " · over " + info.limit + " characters";
        els.counter.textContent = text;
        els.counter.setAttribute("data-encoding", info.encoding);
        els.counter.classList.toggle("ucs2", info.encoding === "UCS-2");
        els.counter.classList.toggle("too-long", !!info.too_long);
      }).catch(function () { /* the counter is advice only */ });
    }, 120);
  }

  function autosize() {
    els.body.style.height = "auto";
    els.body.style.height = Math.min(els.body.scrollHeight, 140) + "px";
  }

  function renderAttachments() {
    els.attachments.textContent = "";
    els.attachments.hidden = attached.length === 0;
    attached.forEach(function (file, index) {
      var thumb = el("img", { alt: file.name, className: "thumb" });
      thumb.src = URL.createObjectURL(file);
      thumb.onload = function () { URL.revokeObjectURL(thumb.src); };
      var remove = el("button", { type: "button", className: "mini", title: "Remove", text: "×" });
      remove.addEventListener("click", function () {
        attached.splice(index, 1);
        renderAttachments();
      });
      els.attachments.appendChild(el("span", { className: "attachment", "data-testid": "attachment" }, [
        thumb, el("span", { className: "attachment-name", text: file.name }), remove,
      ]));
    });
  }

  function showError(text) {
    els.error.textContent = text || "";
  }

  function send(event) {
    event.preventDefault();
    if (!current) return;
    var body = els.body.value;
    if (!body.trim() && !attached.length) {
      showError("Type a message or attach a picture.");
      return;
    }
    var form = new FormData();
    form.append("body", body);
    attached.forEach(function (file) { form.append("media", file, file.name); });
    els.send.disabled = true;
    showError("");
    fetch(phoneUrl(current), { method: "POST", body: form }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || r.statusText);
        return data;
      });
    }).then(function (data) {
      els.body.value = "";
      attached = [];
      els.picture.value = "";
      renderAttachments();
      autosize();
      updateCounter();
      applyMessage(data.message);
    }).catch(function (err) {
      showError(err.message);
    }).then(function () {
      els.send.disabled = false;
      els.body.focus();
    });
  }

  els.form.addEventListener("submit", send);
  els.body.addEventListener("input", function () { autosize(); updateCounter(); showError(""); });
  els.body.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      send(event);
    }
  });
  els.picture.addEventListener("change", function () {
    Array.prototype.forEach.call(els.picture.files, function (file) { attached.push(file); });
    els.picture.value = "";
    renderAttachments();
    showError("");
  });

  // -- account panel ----------------------------------------------------------

  var token = document.getElementById("auth-token");
  var reveal = document.getElementById("reveal-token");
  reveal.addEventListener("click", function () {
    var shown = reveal.getAttribute("aria-pressed") === "true";
    token.textContent = shown ? "••••••••••••••••" : token.getAttribute("data-secret");
    reveal.textContent = shown ? "show" : "hide";
    reveal.setAttribute("aria-pressed", shown ? "false" : "true");
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-copy]"), function (button) {
    button.addEventListener("click", function () {
      var text = document.getElementById(button.getAttribute("data-copy")).textContent;
      if (navigator.clipboard) {
        navigator.clipboard.writeText(text).then(function () {
          button.textContent = "copied";
          setTimeout(function () { button.textContent = "copy"; }, 1200);
        }, function () { /* not allowed: nothing to do */ });
      }
    });
  });
  if (window.matchMedia && window.matchMedia("(max-width: 760px)").matches) {
    els.account.removeAttribute("open");
  }

  // -- live updates -----------------------------------------------------------

  function setLive(state, text) {
    els.live.setAttribute("data-state", state);
    els.live.querySelector(".live-text").textContent = text;
  }

  function connect() {
    if (!window.EventSource) {
      setLive("off", "no live updates");
      return;
    }
    var source = new EventSource(API + "/events");
    source.addEventListener("open", function () {
      setLive("on", "live");
      loadThread();
    });
    source.addEventListener("error", function () {
      setLive("connecting", "reconnecting");
    });
    source.addEventListener("message", function (event) {
      var data = JSON.parse(event.data);
      if (data.message) applyMessage(data.message);
    });
    source.addEventListener("message_deleted", function (event) {
      var sid = JSON.parse(event.data).sid;
      if (sid && messages[sid]) {
        delete messages[sid];
        renderThread();
      }
    });
    source.addEventListener("phone", function (event) {
      var phone = JSON.parse(event.data).phone;
      if (phone && !phoneByNumber(phone.number)) {
        phones.push(phone);
        renderPhones();
      }
    });
  }

  // -- broadcast from a CSV (the sandbox's own worker sends it) ---------------

  function describePreview(p) {
    var lines = [
      p.rows + " rows: " + p.valid + " valid, " + p.invalid + " invalid, " +
        p.duplicates + " duplicates, " + p.opted_out + " opted out",
      plural(p.messages, "message") + ", " + plural(p.segments, "segment") + " (" +
        Object.keys(p.encodings).map(function (k) { return k + " " + p.encodings[k]; }).join(", ") + ")",
    ];
    var chars = Object.keys(p.ucs2_chars);
    if (chars.length) lines.push("UCS-2 because of " + chars.join(" "));
    lines.push("by country: " + Object.keys(p.by_country).map(function (c) {
      var kinds = p.by_country[c];
      return c + " " + Object.keys(kinds).map(function (k) { return kinds[k] + " " + k; }).join(", ");
    }).join(" · "));
    p.rejects.forEach(function (r) { lines.push("line " + r.line + ": " + r.reason); });
    p.samples.forEach(function (s) { lines.push(s.to + ": " + s.body); });
    if (p.id) lines.unshift("broadcast #" + p.id + " queued: " + plural(p.messages, "message"));
    return lines.join("\n");
  }

  function broadcast(send) {
    var form = new FormData(els.broadcast);
    if (send) form.append("send", "1");
    els.broadcastResult.textContent = send ? "queueing…" : "reading…";
    fetch(API + "/broadcasts", { method: "POST", body: form }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || r.statusText);
        return data;
      });
    }).then(function (data) {
      els.broadcastResult.textContent = describePreview(data);
      els.broadcastResult.setAttribute("data-state", data.id ? "queued" : "preview");
    }).catch(function (err) {
      els.broadcastResult.textContent = err.message;
      els.broadcastResult.setAttribute("data-state", "error");
    });
  }

  if (els.broadcast) {
    els.broadcast.addEventListener("submit", function (event) {
      event.preventDefault();
      broadcast(event.submitter && event.submitter.value === "send");
    });
  }
  // A scheduled message that came due arrives as a message; one held for
  // quiet hours or sent elsewhere is noticed on the next look.
  setInterval(loadScheduled, 5000);

  // -- start ------------------------------------------------------------------

  phones = config.phones.slice();
  var wanted = decodeURIComponent((location.hash || "").slice(1));
  var first = phoneByNumber(wanted) ? wanted : phones.length ? phones[0].number : null;
  renderPhones();
  if (first) select(first);
  updateCounter();
  connect();
})();
