// textwire console: live updates and the composer. Plain JavaScript, no build.
//
// A page that shows something live names, on <body>, the event stream to
// listen to (data-events), the fragment of itself to fetch again
// (data-fragment) and the element that fragment fills (data-target). The
// server renders every fragment (escaped by Jinja): this script only swaps
// them in, so it never builds HTML from a message.
(function () {
  "use strict";

  var body = document.body;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var live = document.getElementById("live");

  function setLive(state, text) {
    if (!live) return;
    live.setAttribute("data-state", state);
    live.querySelector(".live-text").textContent = text;
  }

  // -- live fragments ----------------------------------------------------------

  var target = body.getAttribute("data-target") && document.getElementById(body.getAttribute("data-target"));
  var fragmentUrl = body.getAttribute("data-fragment");
  var loading = null;
  var again = false;

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  function scrollDown(el) {
    if (el && el.id === "thread") el.scrollTop = el.scrollHeight;
  }

  function refresh() {
    if (!target || !fragmentUrl) return Promise.resolve();
    if (loading) { again = true; return loading; }
    var stick = nearBottom(target);
    loading = fetch(fragmentUrl, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { location.reload(); throw new Error("logged out"); }
        if (!r.ok) throw new Error(r.statusText);
        return r.text();
      })
      .then(function (html) {
        target.innerHTML = html;
        if (stick) scrollDown(target);
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next change tries again */ })
      .then(function () {
        loading = null;
        if (again) { again = false; refresh(); }
      });
    return loading;
  }

  function connect() {
    var url = body.getAttribute("data-events");
    if (!url) return;
    if (!window.EventSource) { setLive("off", "no live updates"); return; }
    var source = new EventSource(url);
    source.addEventListener("open", function () {
      setLive("on", "live");
      refresh();  // whatever changed while the stream was down
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // The server has no stream to spare (503): look every few seconds.
        setLive("polling", "every 5 s");
        setInterval(refresh, 5000);
      } else {
        setLive("connecting", "reconnecting");
      }
    });
    source.addEventListener("changed", refresh);
  }

  // -- the composer ------------------------------------------------------------

  var form = document.getElementById("composer");
  var text = document.getElementById("body");
  var counter = document.getElementById("counter");
  var error = document.getElementById("reply-error");
  var send = document.getElementById("send");
  var timer = null;
  var seq = 0;

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function updateCounter() {
    if (!counter) return;
    clearTimeout(timer);
    timer = setTimeout(function () {
      var mine = ++seq;
      fetch("/console/api/segments?body=" + encodeURIComponent(text.value), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (info) {
          if (mine !== seq) return;
          var line = info.encoding + " · " + info.characters + "/" + info.per_segment * info.segments +
            " · " + plural(info.segments, "segment");
          if (info.unicode_chars.length) line += " · because of " + info.unicode_chars.slice(0, 5).join(" ");
          if (info.too_long) line += " · over " + info.limit + " characters";
          counter.textContent = line;
          counter.setAttribute("data-encoding", info.encoding);
          counter.classList.toggle("ucs2", info.encoding === "UCS-2");
          counter.classList.toggle("too-long", !!info.too_long);
        })
        .catch(function () { /* advice only */ });
    }, 120);
  }

  function submit(event) {
    event.preventDefault();
    error.textContent = "";
    send.disabled = true;
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRF-Token": csrf },
    })
      .then(function (r) {
        return r.json().then(function (data) {
          if (!r.ok) throw new Error(data.message || r.statusText);
          return data;
        });
      })
      .then(function () {
        text.value = "";
        var media = document.getElementById("media");
        if (media) media.value = "";
        updateCounter();
        return refresh();
      })
      .catch(function (err) { error.textContent = err.message; })
      .then(function () { send.disabled = false; text.focus(); });
  }

  if (form && text) {
    form.addEventListener("submit", submit);
    text.addEventListener("input", function () { updateCounter(); error.textContent = ""; });
    text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) submit(event);
    });
    updateCounter();
  }

  // -- forms that ask first (cancelling a broadcast) -----------------------------

  // On the document: a live fragment brings its forms in fresh.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  scrollDown(target);
  connect();
})();
