// outrigger's override of Alertmanager's UI script, served by `exact: /script.js` from static/
// with a 90-day Expires (in Kubernetes: the ConfigMap mounted on the html root). It is the
// "patched" copy of the UI script the seed served through NGINX's `location = /script.js`: the
// same code as Alertmanager's (here the test UI in tests/e2e_ui/script.js, which
// tests/it/e2e_alertmanager.rs runs behind the sidecar), with more realistic matcher examples in the
// filter box and a visible marker showing the override is in effect. Replace it with your own
// patched copy of Alertmanager's script.js. Self-contained: no external requests.
(function () {
  "use strict";

  // ---- What the sidecar's patched copy changes. ----
  var CONFIG = {
    marker: "outrigger-override",
    banner: "patched by outrigger sidecar",
    placeholder:
      'Custom matcher, e.g. severity="critical", namespace=~"prod-.*", alertname!="Watchdog"',
    examples: [
      'severity="critical"',
      'namespace=~"prod-.*"',
      'alertname!="Watchdog"',
      'team="sre", cluster="eu-west-1"',
      'job="node-exporter", instance=~"db-.*"'
    ]
  };
  // ---- End of the patched part. ----

  var state = { status: null, alerts: [], silences: [], filter: [], filterError: "" };

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    var k;
    for (k in attrs || {}) {
      if (Object.prototype.hasOwnProperty.call(attrs, k)) {
        if (k === "text") e.textContent = attrs[k];
        else e.setAttribute(k, attrs[k]);
      }
    }
    (children || []).forEach(function (c) {
      if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  // Matchers as Alertmanager writes them: name="value", name!="value", name=~"re", name!~"re".
  function formatMatcher(m) {
    var negative = m.isEqual === false;
    var op = m.isRegex ? (negative ? "!~" : "=~") : (negative ? "!=" : "=");
    return m.name + op + JSON.stringify(m.value);
  }

  var MATCHER_RE = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g;
  function parseFilter(text) {
    var out = [];
    var rest = text;
    var m;
    MATCHER_RE.lastIndex = 0;
    while ((m = MATCHER_RE.exec(text)) !== null) {
      var value = JSON.parse('"' + m[3] + '"');
      var re = m[2].charAt(1) === "~" ? new RegExp("^(?:" + value + ")$") : null;
      out.push({ name: m[1], op: m[2], value: value, re: re });
      rest = rest.replace(m[0], "");
    }
    if (rest.replace(/[\s,{}]/g, "") !== "") throw new Error("invalid matcher: " + text);
    return out;
  }
  function matches(filter, labels) {
    return filter.every(function (f) {
      var v = labels[f.name] === undefined ? "" : labels[f.name];
      switch (f.op) {
        case "=": return v === f.value;
        case "!=": return v !== f.value;
        case "=~": return f.re.test(v);
        default: return !f.re.test(v);
      }
    });
  }
  function silenceLabels(s) {
    var labels = {};
    (s.matchers || []).forEach(function (m) {
      if (m.isEqual !== false && !m.isRegex) labels[m.name] = m.value;
    });
    return labels;
  }

  function renderStatus() {
    var s = state.status || {};
    var v = s.versionInfo || {};
    return el("section", { id: "status" }, [
      el("h2", { text: "Status" }),
      el("dl", {}, [
        el("dt", { text: "Version" }), el("dd", { id: "am-version", text: v.version || "unknown" }),
        el("dt", { text: "Revision" }), el("dd", { text: v.revision || "" }),
        el("dt", { text: "Cluster" }),
        el("dd", { id: "cluster-status", text: s.cluster ? s.cluster.status : "unknown" }),
        el("dt", { text: "Uptime since" }), el("dd", { text: s.uptime || "" })
      ])
    ]);
  }

  function renderFilter() {
    var input = el("input", {
      id: "filter",
      type: "text",
      placeholder: CONFIG.placeholder,
      "aria-label": "Filter alerts and silences by matchers"
    });
    input.addEventListener("input", function () {
      try {
        state.filter = parseFilter(input.value);
        state.filterError = "";
      } catch (e) {
        state.filterError = e.message;
      }
      renderLists();
    });
    var examples = CONFIG.examples.map(function (x) {
      var c = el("code", { text: x, title: "Use this filter" });
      c.addEventListener("click", function () {
        input.value = x;
        input.dispatchEvent(new Event("input"));
      });
      return c;
    });
    return el("section", { class: "filter" }, [
      el("h2", { text: "Filter" }),
      input,
      el("div", { id: "matcher-examples", class: "help" }, ["Matcher examples: "].concat(examples)),
      el("div", { id: "filter-error", class: "error" })
    ]);
  }

  function renderAlerts() {
    var shown = state.alerts.filter(function (a) { return matches(state.filter, a.labels || {}); });
    var items = shown.map(function (a) {
      var labels = Object.keys(a.labels || {}).sort().map(function (k) {
        return el("span", { class: "label", text: k + "=" + JSON.stringify(a.labels[k]) });
      });
      var st = a.status ? a.status.state : "";
      return el("li", {}, labels.concat([
        el("div", { class: "meta", text: st + " since " + (a.startsAt || "") })
      ]));
    });
    if (items.length === 0) items = [el("li", { class: "meta", text: "No alerts" })];
    return el("section", { id: "alerts" }, [
      el("h2", { text: "Alerts (" + shown.length + ")" }),
      el("ul", { class: "items" }, items)
    ]);
  }

  function renderSilences() {
    var shown = state.silences.filter(function (s) {
      return matches(state.filter, silenceLabels(s));
    });
    var items = shown.map(function (s) {
      var ms = (s.matchers || []).map(function (m) {
        return el("span", { class: "matcher", text: formatMatcher(m) });
      });
      return el("li", { "data-silence-id": s.id }, ms.concat([
        el("div", { class: "comment", text: s.comment || "" }),
        el("div", {
          class: "meta",
          text: (s.status ? s.status.state : "") + ", by " + (s.createdBy || "?") +
            ", ends " + (s.endsAt || "")
        })
      ]));
    });
    if (items.length === 0) items = [el("li", { class: "meta", text: "No silences" })];
    return el("section", { id: "silences" }, [
      el("h2", { text: "Silences (" + shown.length + ")" }),
      el("ul", { class: "items" }, items)
    ]);
  }

  var listsHolder = el("div", { id: "lists" });
  function renderLists() {
    document.getElementById("filter-error").textContent = state.filterError;
    listsHolder.textContent = "";
    listsHolder.appendChild(renderAlerts());
    listsHolder.appendChild(renderSilences());
  }

  function render() {
    var root = document.getElementById("app") || document.body;
    root.textContent = "";
    root.setAttribute("data-script", CONFIG.marker);
    if (CONFIG.banner) {
      root.appendChild(el("div", { id: "override-banner", class: "banner", text: CONFIG.banner }));
    }
    root.appendChild(el("header", {}, [
      el("h1", { text: "Alertmanager" }),
      el("nav", {}, [
        el("a", { href: "#/alerts", text: "Alerts" }),
        el("a", { href: "#/silences", text: "Silences" }),
        el("a", { href: "#/status", text: "Status" })
      ])
    ]));
    var main = el("main", {}, [renderStatus(), renderFilter(), listsHolder]);
    root.appendChild(main);
    renderLists();
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (r) {
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.json();
    });
  }

  Promise.all([getJSON("api/v2/status"), getJSON("api/v2/alerts"), getJSON("api/v2/silences")])
    .then(function (r) {
      state.status = r[0];
      state.alerts = r[1] || [];
      state.silences = r[2] || [];
      render();
    })
    .catch(function (e) {
      render();
      var msg = el("p", { id: "api-error", class: "error", text: "API error: " + e.message });
      document.getElementById("app").appendChild(msg);
    });
})();
