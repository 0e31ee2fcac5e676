// Responder console: a little progressive enhancement, no build step.
(function () {
  "use strict";
  // After sign-in: continue with a navigation that starts on this site, so
  // the browser sends the SameSite=Strict session cookie.
  var go = document.getElementById("go");
  if (go) { window.location.replace(go.getAttribute("data-next") || "/approvals"); return; }

  // Live pages (approvals, audit): reload the main section when the engine
  // reports a change (server-sent events from /events).
  var live = document.getElementById("live");
  if (!live || live.getAttribute("data-live") !== "1" || !window.EventSource) { return; }
  var es = new EventSource("/events");
  var busy = false;
  function refresh() {
    if (busy) { return; }
    var active = document.activeElement;
    if (active && active.tagName === "INPUT" && active.value) { return; } // never wipe what someone types
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (fresh) { live.innerHTML = fresh.innerHTML; live.setAttribute("data-updated", String(Date.now())); }
      })
      .finally(function () { busy = false; });
  }
  es.addEventListener("changed", refresh);
  es.addEventListener("signedout", function () { es.close(); window.location.assign("/signin"); });
})();
