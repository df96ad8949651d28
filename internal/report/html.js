(function () {
  "use strict";
  // The data document is described in htmlgroupsdata.go.
  var D = JSON.parse(document.getElementById("fleetscan-data").textContent);
  var S = D.str, PAGE = 100, MAXROWS = 500;
  var table = document.getElementById("groups");
  var platforms = table.getAttribute("data-platforms") === "1";
  var thead = table.querySelector("thead"), tbody = table.querySelector("tbody");
  var q = document.getElementById("q"), sev = document.getElementById("f-sev");
  var status = document.getElementById("f-status"), vexSel = document.getElementById("f-vex");
  var breached = document.getElementById("f-breached"), kev = document.getElementById("f-kev");
  var count = document.getElementById("count");
  var DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", VAL = new Uint8Array(128);
  for (var i = 0; i < 64; i++) VAL[DIGITS.charCodeAt(i)] = i;
  var RW = D.enc[0], DW = D.enc[1], D0 = D.enc[2], KW = D.enc[3], STEP = RW + DW + KW;

  // Stats of a group: [findings, breached, kev, earliest, sev×5, status×5, vex×4].
  var F = 0, BR = 1, KEV = 2, EARLY = 3, SEV = 4, STATUS = 9, VEX = 14;

  function num(s, p, w) {
    var n = 0;
    for (var i = 0; i < w; i++) n = n * 64 + VAL[s.charCodeAt(p + i)];
    return n;
  }
  // rowsOf decodes image i's rows: [record, deadline day, kind].
  function rowsOf(i) {
    var s = D.rows[i], out = [];
    for (var p = 0; p < s.length; p += STEP) {
      out.push([num(s, p, RW), D0 + num(s, p + RW, DW), num(s, p + RW + DW, KW)]);
    }
    return out;
  }
  function day(d) { return d == null ? "" : new Date(d * 86400000).toISOString().slice(0, 10); }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
    return td;
  }
  function head(cols) {
    var tr = document.createElement("tr");
    cols.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c[0];
      if (c[1]) th.className = c[1];
      tr.appendChild(th);
    });
    return tr;
  }
  function badge(td, rank) {
    var s = document.createElement("span");
    s.className = "sev " + D.sev[rank].toLowerCase(); s.textContent = D.sev[rank];
    td.appendChild(s);
  }
  function link(td, text, href) {
    var a = document.createElement("a");
    a.href = href; a.textContent = text;
    if (href.charAt(0) !== "#") a.rel = "noreferrer";
    td.appendChild(a);
  }
  function vulnCell(tr, v) {
    var td = cell(tr, "", "nowrap");
    if (/^https?:\/\//.test(S[v[2]])) link(td, S[v[0]], S[v[2]]); else td.textContent = S[v[0]];
    if (v[3]) {
      var k = document.createElement("span");
      k.className = v[3] === 2 ? "kev ransom" : "kev"; k.textContent = "KEV";
      k.title = "CISA KEV: due " + (v[4] >= 0 ? S[v[4]] : "") + (v[3] === 2 ? ", known ransomware use" : "");
      td.appendChild(k);
    }
    return td;
  }
  function epssCell(tr, v) {
    var td = cell(tr, v[5] == null ? "" : v[5], "num");
    if (v[6] != null) td.title = "percentile " + v[6];
  }
  function imageKey(img) { return img[1] + (platforms ? "@" + img[6] : ""); }
  function imageCell(tr, i) {
    var img = D.images[i], td = cell(tr, "");
    link(td, S[img[0]], "#image=" + imageKey(img));
    td.title = img[1] + " " + img[6];
    if (platforms) cell(tr, img[6], "nowrap");
  }
  function vexText(st) {
    var parts = [];
    for (var i = 0; i < 4; i++) if (st[VEX + i]) parts.push(D.vexStatus[i] + " " + st[VEX + i]);
    return parts.join(", ");
  }
  function sevCounts(tr, st) {
    D.shown.forEach(function (r) { cell(tr, st[SEV + r] || "", "num"); });
  }
  function worst(st) {
    for (var r = 0; r < 5; r++) if (st[SEV + r]) return r;
    return 5;
  }
  function statCells(tr, st) {
    cell(tr, st[F], "num"); cell(tr, st[BR] || "", "num"); cell(tr, st[KEV] || "", "num");
    cell(tr, day(st[EARLY]), "nowrap");
  }
  var sevHeads = D.shown.map(function (r) { return [D.sev[r], "num"]; });
  var statHeads = [["Findings", "num"], ["Breached", "num"], ["KEV", "num"], ["Earliest deadline"]];

  // One line of an expanded group: a row of an image.
  function findingCells(tr, img, r, withImage) {
    var rec = D.recs[r[0]], k = D.kinds[r[2]], v = D.vulns[rec[0]];
    if (k[3]) tr.className = "breached";
    if (withImage) imageCell(tr, img);
    else {
      vulnCell(tr, v);
      badge(cell(tr, ""), rec[1]);
    }
    cell(tr, S[rec[2]]); cell(tr, S[rec[3]]); cell(tr, S[rec[4]] || "—");
    cell(tr, day(r[1]), "nowrap"); cell(tr, r[1] - D.asOf + k[4], "num");
    cell(tr, D.status[k[0]], "status-" + D.status[k[0]]);
    var x = k[2] >= 0 ? D.vex[k[2]] : null;
    var vx = cell(tr, x ? S[x[0]] + (S[x[1]] ? ": " + S[x[1]] : "") : "", "small");
    if (x && S[x[2]]) vx.title = S[x[2]];
    if (!withImage) { cell(tr, v[7] == null ? "" : v[7], "num"); epssCell(tr, v); }
    cell(tr, S[k[1]]);
    if (!withImage) cell(tr, S[v[1]], "small");
  }
  var findingHeads = [["Package"], ["Installed"], ["Fixed in"], ["Deadline"], ["Days left", "num"], ["Status"], ["VEX"]];

  function subTable(heads, fill, total, note) {
    var div = document.createElement("div"), t = document.createElement("table");
    t.className = "sub";
    t.appendChild(document.createElement("thead")).appendChild(head(heads));
    var body = t.appendChild(document.createElement("tbody"));
    fill(body);
    div.appendChild(t);
    if (total > MAXROWS) {
      var p = document.createElement("p");
      p.className = "muted small"; p.textContent = "Showing " + MAXROWS + " of " + total + ". " + note;
      div.appendChild(p);
    }
    return div;
  }
  var byVuln = {}, recVuln = null;
  // rowsOfVuln lists [image, row] of every row of vulnerability v: one
  // pass over the rows of every image.
  function rowsOfVuln(v) {
    if (byVuln[v]) return byVuln[v];
    if (!recVuln) {
      recVuln = new Int32Array(D.recs.length);
      for (var r = 0; r < D.recs.length; r++) recVuln[r] = D.recs[r][0];
    }
    var out = [];
    for (var i = 0; i < D.rows.length; i++) {
      var s = D.rows[i];
      for (var p = 0; p < s.length; p += STEP) {
        var rec = num(s, p, RW);
        if (recVuln[rec] === v) out.push([i, [rec, D0 + num(s, p + RW, DW), num(s, p + RW + DW, KW)]]);
      }
    }
    return (byVuln[v] = out);
  }
  function detailVuln(v) {
    var list = rowsOfVuln(v);
    var heads = [["Image"]].concat(platforms ? [["Platform"]] : [], findingHeads, [["Rule"]]);
    return subTable(heads, function (body) {
      list.slice(0, MAXROWS).forEach(function (x) {
        var tr = document.createElement("tr");
        findingCells(tr, x[0], x[1], true);
        body.appendChild(tr);
      });
    }, list.length, "Every row is in report.csv and report.json.");
  }
  function detailImage(i) {
    var img = D.images[i], list = rowsOf(i), div = document.createElement("div");
    var info = document.createElement("p");
    info.className = "small";
    var labels = img[2].map(function (s) { return S[s]; }).join(", ");
    info.textContent = img[1] + " · " + img[6] + (img[4] ? " · end-of-life OS" : "") + " · workloads (" + img[3] + "): " +
      labels + (img[3] > img[2].length ? " … (all of them in report.csv)" : "");
    div.appendChild(info);
    var heads = [["Vulnerability"], ["Severity"]].concat(findingHeads, [["CVSS", "num"], ["EPSS", "num"], ["Rule"], ["Title"]]);
    div.appendChild(subTable(heads, function (body) {
      list.slice(0, MAXROWS).forEach(function (r) {
        var tr = document.createElement("tr");
        findingCells(tr, i, r, false);
        body.appendChild(tr);
      });
    }, list.length, "Every row is in report.csv and report.json."));
    return div;
  }
  function detailNS(n) {
    var list = D.ns[n][3];
    var heads = [["Image"]].concat(platforms ? [["Platform"]] : [], sevHeads, statHeads);
    return subTable(heads, function (body) {
      list.slice(0, MAXROWS).forEach(function (i) {
        var tr = document.createElement("tr"), st = D.images[i][5];
        imageCell(tr, i); sevCounts(tr, st); statCells(tr, st);
        body.appendChild(tr);
      });
    }, list.length, "The images of every namespace are in report.json.");
  }

  var views = {
    vulns: {
      groups: D.vulns, stats: function (v) { return v[12]; },
      text: function (v) { return (S[v[0]] + " " + S[v[1]]).toLowerCase(); },
      key: function (v) { return S[v[0]]; }, rank: function (v) { return v[8]; },
      heads: [["Vulnerability"], ["Severity"], ["EPSS", "num"], ["CVSS", "num"], ["Images", "num"], ["Workloads", "num"], ["Clusters", "num"]]
        .concat(statHeads, [["VEX"], ["Title"]]),
      cells: function (tr, v) {
        vulnCell(tr, v); badge(cell(tr, ""), v[8]); epssCell(tr, v); cell(tr, v[7] == null ? "" : v[7], "num");
        cell(tr, v[9], "num"); cell(tr, v[10], "num"); cell(tr, v[11], "num"); statCells(tr, v[12]);
        cell(tr, vexText(v[12]), "small"); cell(tr, S[v[1]], "small");
      },
      detail: detailVuln
    },
    images: {
      groups: D.images, stats: function (img) { return img[5]; },
      text: function (img) { return (S[img[0]] + " " + img[1] + " " + img[6] + " " + img[2].map(function (s) { return S[s]; }).join(" ")).toLowerCase(); },
      key: imageKey, rank: function (img) { return worst(img[5]); },
      heads: [["Image"]].concat(platforms ? [["Platform"]] : [], [["Digest"]], sevHeads, statHeads, [["Workloads"]]),
      cells: function (tr, img, i) {
        imageCell(tr, i); cell(tr, img[1].slice(0, 19), "small"); sevCounts(tr, img[5]); statCells(tr, img[5]);
        var labels = img[2].map(function (s) { return S[s]; }).join(", ");
        cell(tr, labels + (img[3] > img[2].length ? " +" + (img[3] - img[2].length) + " more" : ""), "small");
      },
      detail: detailImage
    },
    ns: {
      groups: D.ns, stats: function (n) { return n[4]; },
      text: function (n) { return S[n[0]].toLowerCase(); },
      key: function (n) { return S[n[0]]; }, rank: function (n) { return worst(n[4]); },
      heads: [["Namespace"], ["Clusters", "num"], ["Images", "num"], ["Workloads", "num"]].concat(sevHeads, statHeads),
      cells: function (tr, n) {
        cell(tr, S[n[0]]); cell(tr, n[1], "num"); cell(tr, n[3].length, "num"); cell(tr, n[2], "num");
        sevCounts(tr, n[4]); statCells(tr, n[4]);
      },
      detail: detailNS
    }
  };

  // order ranks a view's groups: breached, KEV, earliest deadline, worst
  // severity, most findings, name.
  function order(view) {
    if (view.order) return view.order;
    var g = view.groups, idx = g.map(function (_, i) { return i; });
    idx.sort(function (a, b) {
      var x = view.stats(g[a]), y = view.stats(g[b]);
      var ex = x[EARLY] == null ? Infinity : x[EARLY], ey = y[EARLY] == null ? Infinity : y[EARLY];
      var ka = view.key(g[a]), kb = view.key(g[b]);
      return (y[BR] > 0) - (x[BR] > 0) || (y[KEV] > 0) - (x[KEV] > 0) || ex - ey ||
        view.rank(g[a]) - view.rank(g[b]) || y[F] - x[F] || (ka < kb ? -1 : ka > kb ? 1 : 0);
    });
    return (view.order = idx);
  }
  function vexOK(st, v) {
    var with_ = st[VEX] + st[VEX + 1] + st[VEX + 2] + st[VEX + 3];
    switch (v) {
    case "": return true;
    case "hide": return st[VEX] + st[VEX + 2] < st[F];
    case "only": return with_ > 0;
    case "none": return with_ < st[F];
    }
    return st[VEX + D.vexStatus.indexOf(v)] > 0;
  }

  var current = "vulns", page = 0, filtered = [], open = {};
  function apply() {
    var view = views[current], text = q.value.trim().toLowerCase(), sv = sev.value ? D.sev.indexOf(sev.value) : -1;
    var st = status.value ? D.status.indexOf(status.value) : -1, br = breached.checked, kv = kev.checked, vx = vexSel.value;
    if (text && !view.hay) view.hay = view.groups.map(view.text);
    filtered = order(view).filter(function (i) {
      var s = view.stats(view.groups[i]);
      return (sv < 0 || s[SEV + sv] > 0) && (st < 0 || s[STATUS + st] > 0) && (!br || s[BR] > 0) && (!kv || s[KEV] > 0) &&
        vexOK(s, vx) && (!text || view.hay[i].indexOf(text) >= 0);
    });
    page = 0;
    render();
  }
  function render() {
    var view = views[current], start = page * PAGE, end = Math.min(filtered.length, start + PAGE);
    thead.replaceChildren(head(view.heads));
    var frag = document.createDocumentFragment();
    for (var n = start; n < end; n++) {
      var i = filtered[n], g = view.groups[i], tr = document.createElement("tr");
      tr.className = "group" + (view.stats(g)[BR] ? " breached" : "");
      tr.setAttribute("data-group", i);
      tr.tabIndex = 0;
      view.cells(tr, g, i);
      frag.appendChild(tr);
      if (open[current + i]) frag.appendChild(detailRow(view, i));
    }
    tbody.replaceChildren(frag);
    var text = filtered.length ? "Showing " + (start + 1) + "–" + end + " of " + filtered.length : "No matching group";
    if (filtered.length !== view.groups.length) text += " (filtered from " + view.groups.length + ")";
    count.textContent = text;
    document.getElementById("prev").disabled = page === 0;
    document.getElementById("next").disabled = end >= filtered.length;
    document.querySelectorAll("#views button").forEach(function (b) {
      b.setAttribute("aria-selected", String(b.getAttribute("data-view") === current));
    });
  }
  function detailRow(view, i) {
    var tr = document.createElement("tr"), td = document.createElement("td");
    tr.className = "detail";
    td.colSpan = view.heads.length;
    td.appendChild(view.detail(i));
    tr.appendChild(td);
    return tr;
  }
  function toggle(tr) {
    var view = views[current], i = +tr.getAttribute("data-group"), next = tr.nextSibling;
    if (open[current + i]) {
      delete open[current + i];
      if (next && next.className === "detail") next.remove();
    } else {
      open[current + i] = true;
      tr.after(detailRow(view, i));
    }
  }
  function show(view) {
    current = view;
    apply();
  }
  // Hash links open a group: #vuln=CVE-…, #image=sha256:…[@platform], #ns=name.
  function follow() {
    var m = /^#(vuln|image|ns)=(.+)$/.exec(location.hash);
    if (!m) return;
    var name = m[1] === "vuln" ? "vulns" : m[1] === "image" ? "images" : "ns", view = views[name], key;
    try { key = decodeURIComponent(m[2]); } catch (e) { return; }
    for (var i = 0; i < view.groups.length; i++) {
      if (view.key(view.groups[i], i) === key) {
        q.value = ""; sev.value = ""; status.value = ""; vexSel.value = ""; breached.checked = false; kev.checked = false;
        open[name + i] = true;
        current = name;
        apply();
        page = Math.floor(filtered.indexOf(i) / PAGE);
        render();
        var tr = tbody.querySelector('tr[data-group="' + i + '"]');
        if (tr) tr.scrollIntoView({block: "nearest"});
        return;
      }
    }
  }

  var timer = null;
  q.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
  [sev, status, vexSel, breached, kev].forEach(function (e) { e.addEventListener("change", apply); });
  document.getElementById("prev").addEventListener("click", function () { if (page > 0) { page--; render(); } });
  document.getElementById("next").addEventListener("click", function () { if ((page + 1) * PAGE < filtered.length) { page++; render(); } });
  document.getElementById("views").addEventListener("click", function (e) {
    var b = e.target.closest("button");
    if (b) show(b.getAttribute("data-view"));
  });
  tbody.addEventListener("click", function (e) {
    if (e.target.closest("a")) return;
    var tr = e.target.closest("tr.group");
    if (tr) toggle(tr);
  });
  tbody.addEventListener("keydown", function (e) {
    var tr = e.target.closest("tr.group");
    if (tr && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); toggle(tr); }
  });
  // #selfcheck clicks the first group of each view open and shut, as a
  // reader would, and records the outcome in data-selfcheck (the tests read
  // it from the DOM).
  function selfCheck() {
    var out = [];
    ["vulns", "images", "ns"].forEach(function (name) {
      show(name);
      var tr = tbody.querySelector("tr.group");
      if (!tr) { out.push(name + ": no group"); return; }
      tr.cells[1].click();
      var detail = tr.nextSibling, rows = detail && detail.className === "detail" ? detail.querySelectorAll("table.sub > tbody > tr").length : 0;
      tr.cells[1].click();
      var shut = !tr.nextSibling || tr.nextSibling.className !== "detail";
      out.push(name + ": " + (rows > 0 && shut ? "ok " + rows : "failed (" + rows + " rows, shut " + shut + ")"));
    });
    show("vulns");
    document.documentElement.setAttribute("data-selfcheck", out.join("; "));
  }
  window.addEventListener("hashchange", follow);
  apply();
  var t0 = performance.now();
  if (location.hash === "#selfcheck") selfCheck();
  else if (location.hash) {
    follow();
    document.documentElement.setAttribute("data-follow-ms", String(Math.round(performance.now() - t0)));
  }
  document.documentElement.setAttribute("data-ready", String(Math.round(performance.now())));
  if (performance.mark) performance.mark("fleetscan-ready");
  var paint = performance.getEntriesByName ? performance.getEntriesByName("first-contentful-paint") : [];
  if (paint.length) document.documentElement.setAttribute("data-first-paint", String(Math.round(paint[0].startTime)));
  else if (window.PerformanceObserver) {
    try {
      new PerformanceObserver(function (list) {
        list.getEntries().forEach(function (e) {
          if (e.name === "first-contentful-paint") document.documentElement.setAttribute("data-first-paint", String(Math.round(e.startTime)));
        });
      }).observe({type: "paint", buffered: true});
    } catch (e) { /* no paint timing */ }
  }
})();
