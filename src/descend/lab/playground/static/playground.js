// The playground page. It keeps the settings (in the address bar), asks the server for every
// number, and draws what comes back (figures.js, plot.js): no optimizer or theory formula is
// computed here. Interactions: sliders, the start point dragged on the paths, a click on the
// rate map; each writes the address and recomputes what it changes.
"use strict";

(function () {
  var MAX_RUNS = 4;
  var TOLERANCES = ["1e-3", "1e-6", "1e-9"];
  var STEPS = {name: "steps", doc: "updates per run", "default": 200, low: 10, high: 5000,
               scale: "log", kind: "int", zero: false};
  var SEED = {name: "seed", doc: "which minibatches are drawn", "default": 0, low: 0, high: 99,
              scale: "linear", kind: "int", zero: false};
  var DECAY = {name: "decay", doc: "EMA decay of the averaged weights", "default": 0.98,
               low: 0.5, high: 0.999, scale: "linear", kind: "float", zero: false};
  var DEFAULT_RUNS = [{rule: "sgd:lr=0.09", schedule: "", average: ""},
                      {rule: "sgd_momentum:lr=0.02,momentum=0.8", schedule: "", average: ""}];

  var descend = window.descend, figures = descend.figures;
  var element = descend.element, short = descend.short, liveRuns = figures.liveRuns;
  var focusedRun = figures.focusedRun;

  var pg = window.playground = {catalog: null, state: null, problem: null, runs: [],
                                errors: {}, timings: [], updates: 0, focus: 0};

  // -- settings <-> address bar ---------------------------------------------------------

  function parseValue(text) {
    var lower = text.toLowerCase();
    if (lower === "true") { return true; }
    if (lower === "false") { return false; }
    var number = Number(text);
    return text !== "" && isFinite(number) ? number : text;
  }

  // "name:key=value,..." as {name, args}; values that are not numbers stay text, so the
  // server sees (and names) exactly what the address said.
  function parseSpec(text) {
    var colon = text.indexOf(":");
    var spec = {name: (colon < 0 ? text : text.slice(0, colon)).trim(), args: {}};
    if (colon >= 0) {
      text.slice(colon + 1).split(",").forEach(function (item) {
        var equals = item.indexOf("=");
        if (item.trim() && equals > 0) {
          spec.args[item.slice(0, equals).trim()] = parseValue(item.slice(equals + 1).trim());
        }
      });
    }
    return spec;
  }

  function formatValue(value) {
    if (typeof value === "boolean") { return value ? "True" : "False"; }
    return String(value);
  }

  // The spec text with only the arguments that differ from their defaults.
  function formatSpec(name, args, sliders) {
    var defaults = {};
    (sliders || []).forEach(function (s) { defaults[s.name] = s["default"]; });
    var parts = Object.keys(args).filter(function (key) {
      return !(key in defaults) || args[key] !== defaults[key];
    }).map(function (key) { return key + "=" + formatValue(args[key]); });
    return parts.length ? name + ":" + parts.join(",") : name;
  }

  function readAddress() {
    var query = new URLSearchParams(window.location.search);
    var state = {problem: query.get("problem") || "ravine", steps: query.get("steps") || "200",
                 seed: query.get("seed") || "0", tol: query.get("tol") || "1e-6",
                 start: query.get("start") || "", runs: []};
    // Runs past the fourth are refused out loud: each run needs a marker and shade of its
    // own, and four is where the figures stay legible.
    pg.refused = [];
    query.forEach(function (_, key) {
      var match = /^[rsa](\d+)$/.exec(key);
      if (match && (Number(match[1]) > MAX_RUNS || Number(match[1]) < 1) &&
          pg.refused.indexOf(key) < 0) {
        pg.refused.push(key);
      }
    });
    for (var k = 1; k <= MAX_RUNS; k++) {
      if (query.get("r" + k) !== null) {
        state.runs.push({rule: query.get("r" + k), schedule: query.get("s" + k) || "",
                         average: query.get("a" + k) || ""});
      }
    }
    if (!state.runs.length) { state.runs = JSON.parse(JSON.stringify(DEFAULT_RUNS)); }
    return state;
  }

  function encode(value) {
    return encodeURIComponent(value).replace(/%3A/g, ":").replace(/%2C/g, ",")
      .replace(/%3D/g, "=");
  }

  function query(pairs) {
    return pairs.filter(function (pair) { return pair[1] !== ""; }).map(function (pair) {
      return pair[0] + "=" + encode(pair[1]);
    }).join("&");
  }

  function writeAddress() {
    var s = pg.state;
    var pairs = [["problem", s.problem], ["steps", s.steps], ["seed", s.seed], ["tol", s.tol],
                 ["start", s.start]];
    s.runs.forEach(function (run, i) {
      pairs.push(["r" + (i + 1), run.rule], ["s" + (i + 1), run.schedule],
                 ["a" + (i + 1), run.average]);
    });
    window.history.replaceState(null, "", "?" + query(pairs));
  }

  // -- talking to the server ---------------------------------------------------------------

  // One channel per figure source: at most one request in flight; while it is, only the
  // newest settings wait, remembering the earliest input they answer (for the latency).
  var channels = {};

  function request(key, url, since, done) {
    var channel = channels[key] || (channels[key] = {busy: false, next: null, latest: null});
    channel.latest = url;
    if (channel.busy) {
      channel.next = {url: url, since: channel.next ? Math.min(channel.next.since, since) : since,
                      done: done};
      return;
    }
    channel.busy = true;
    var sent = performance.now();
    fetch(url).then(function (response) {
      return response.json().then(function (body) {
        return {ok: response.ok, body: body};
      }, function () {
        return {ok: false, body: {error: "the server answered " + response.status}};
      });
    }, function () {
      return {ok: false, body: {error: "the playground server is not reachable"}};
    }).then(function (answer) {
      channel.busy = false;
      if (url === channel.latest) { done(answer, since, sent); }
      var next = channel.next;
      channel.next = null;
      if (next) { request(key, next.url, next.since, next.done); }
    });
  }

  function problemUrl() { return "/api/problem?" + query([["problem", pg.state.problem]]); }

  function runUrl(run) {
    var s = pg.state;
    return "/api/run?" + query([["problem", s.problem], ["rule", run.rule],
                                ["schedule", run.schedule], ["average", run.average],
                                ["steps", s.steps], ["seed", s.seed], ["tol", s.tol],
                                ["start", s.start]]);
  }

  function refreshProblem(since) {
    request("problem", problemUrl(), since, function (answer) {
      if (answer.ok) {
        pg.problem = answer.body;
        delete pg.errors["page:problem"];
      } else {
        pg.problem = null;
        pg.errors["page:problem"] = answer.body.error;
      }
      renderCards();
      redraw();
    });
  }

  function refreshRun(index, since) {
    var run = pg.state.runs[index];
    request("run" + index, runUrl(run), since, function (answer, began, sent) {
      delete pg.errors["run" + index];
      if (answer.ok) {
        pg.runs[index] = answer.body;
        Object.keys(pg.errors).forEach(function (key) {
          // A run computed: the page's settings it used are fine.
          if (key.indexOf("page:") === 0 && key !== "page:problem") { delete pg.errors[key]; }
        });
      } else {
        pg.runs[index] = null;
        // A setting the whole page shares is the page's error, said once, not the run's.
        var key = answer.body.scope === "page" ? "page:" + answer.body.setting : "run" + index;
        pg.errors[key] = answer.body.error;
      }
      redraw();
      if (answer.ok) {
        var now = performance.now();
        pg.timings.push({run: index, server_ms: answer.body.server_ms,
                         compute_ms: answer.body.compute_ms, fetch_ms: now - sent,
                         total_ms: now - began, steps: answer.body.steps});
        if (pg.timings.length > 200) { pg.timings.shift(); }
        drawFacts();  // the status line reports this update, redraw included
      }
    });
  }

  function refreshAll() {
    var now = performance.now();
    writeAddress();
    refreshProblem(now);
    pg.runs.length = pg.state.runs.length;
    pg.state.runs.forEach(function (_, i) { refreshRun(i, now); });
  }

  // -- controls -------------------------------------------------------------------------

  function toPosition(spec, value) {
    if (spec.scale === "log") {
      if (spec.zero && value <= 0) { return 0; }
      var first = spec.zero ? 1 : 0;
      var t = Math.log(value / spec.low) / Math.log(spec.high / spec.low);
      return Math.round(first + Math.min(1, Math.max(0, t)) * (1000 - first));
    }
    return Math.round(1000 * Math.min(1, Math.max(0, (value - spec.low) /
                                                     (spec.high - spec.low))));
  }

  function fromPosition(spec, position) {
    var value;
    if (spec.scale === "log") {
      if (spec.zero && position === 0) { return 0; }
      var first = spec.zero ? 1 : 0;
      value = spec.low * Math.pow(spec.high / spec.low, (position - first) / (1000 - first));
    } else {
      value = spec.low + (spec.high - spec.low) * position / 1000;
    }
    return spec.kind === "int" ? Math.round(value) : Number(value.toPrecision(4));
  }

  // A slider with its value as editable text (for an exact value), or a checkbox.
  function sliderControl(spec, value, onChange) {
    var id = "c" + Math.random().toString(36).slice(2);
    if (spec.kind === "bool") {
      var box = element("input", {type: "checkbox", id: id, "data-name": spec.name});
      box.checked = value === true;
      box.addEventListener("change", function () { onChange(box.checked, performance.now()); });
      return element("label", {title: spec.doc}, [box, document.createTextNode(" " + spec.name)]);
    }
    var range = element("input", {type: "range", min: "0", max: "1000", id: id,
                                  "data-name": spec.name, "aria-label": spec.name});
    var text = element("input", {type: "text", "data-name": spec.name, "aria-label": spec.name});
    var known = typeof value === "number";
    range.value = String(toPosition(spec, known ? value : spec["default"]));
    text.value = known ? String(value) : String(value === undefined ? spec["default"] : value);
    range.addEventListener("input", function () {
      var picked = fromPosition(spec, Number(range.value));
      text.value = String(picked);
      onChange(picked, performance.now());
    });
    text.addEventListener("change", function () {
      var typed = parseValue(text.value.trim());
      if (typeof typed === "number") { range.value = String(toPosition(spec, typed)); }
      onChange(typed, performance.now());
    });
    return element("div", {"class": "slider", title: spec.doc},
                   [element("label", {"for": id, text: spec.name}), range, text]);
  }

  function ruleCatalog(name) {
    return (pg.catalog.rules.filter(function (r) { return r.name === name; })[0]) || null;
  }

  function problemCatalog(name) {
    return (pg.catalog.problems.filter(function (p) { return p.name === name; })[0]) || null;
  }

  function renderProblem() {
    var select = document.getElementById("problem");
    var spec = parseSpec(pg.state.problem);
    select.innerHTML = "";
    pg.catalog.problems.forEach(function (p) {
      var option = element("option", {value: p.name, text: p.title});
      if (p.name === spec.name) { option.selected = true; }
      select.appendChild(option);
    });
    select.onchange = function () {
      pg.state.problem = select.value;
      pg.state.start = "";  // a start point belongs to its problem's window
      renderProblem();
      refreshAll();
    };
    var holder = document.getElementById("problem-sliders");
    holder.innerHTML = "";
    var offered = problemCatalog(spec.name);
    (offered ? offered.sliders : []).forEach(function (slider) {
      holder.appendChild(sliderControl(slider, spec.args[slider.name], function (value, when) {
        spec.args[slider.name] = value;
        pg.state.problem = formatSpec(spec.name, spec.args, offered.sliders);
        writeAddress();
        refreshProblem(when);
        pg.state.runs.forEach(function (_, i) { refreshRun(i, when); });
      }));
    });
    var runs = document.getElementById("run-sliders");
    runs.innerHTML = "";
    runs.appendChild(sliderControl(STEPS, parseValue(pg.state.steps), function (value, when) {
      pg.state.steps = String(value);
      writeAddress();
      pg.state.runs.forEach(function (_, i) { refreshRun(i, when); });
    }));
    if (spec.name === "least_squares") {
      runs.appendChild(sliderControl(SEED, parseValue(pg.state.seed), function (value, when) {
        pg.state.seed = String(value);
        writeAddress();
        pg.state.runs.forEach(function (_, i) { refreshRun(i, when); });
      }));
    }
    var tolerance = element("select", {id: "tolerance"});
    TOLERANCES.concat(TOLERANCES.indexOf(pg.state.tol) < 0 ? [pg.state.tol] : [])
      .forEach(function (t) {
        var option = element("option", {value: t, text: t});
        if (t === pg.state.tol) { option.selected = true; }
        tolerance.appendChild(option);
      });
    tolerance.onchange = function () {
      pg.state.tol = tolerance.value;
      refreshAll();
    };
    runs.appendChild(element("label", {}, [document.createTextNode("tolerance "), tolerance]));
  }

  function theoryButtons(card, index, spec, rule) {
    var quadratic = pg.problem && pg.problem.quadratic;
    if (!quadratic) { return; }
    var offers = {
      sgd: [["set optimal step size (gradient descent)", "gradient descent"],
            ["set optimal step size and momentum (heavy ball)", "heavy ball"]],
      sgd_momentum: [["set optimal step size and momentum", "heavy ball"]],
      nesterov: [["set optimal step size and momentum", "Nesterov"]]
    }[spec.name] || [];
    var row = element("div", {"class": "buttons"});
    offers.forEach(function (offer) {
      var button = element("button", {type: "button", "data-optimal": offer[1],
                                      text: offer[0]});
      button.addEventListener("click", function () {
        var best = quadratic.optimal[offer[1]];
        // The server rounds to the digits that keep the optimum's rate (it has a kink there).
        spec.args.lr = best.rounded.lr;
        if (offer[1] !== "gradient descent" || spec.name !== "sgd") {
          spec.args.momentum = best.rounded.momentum;
        } else {
          delete spec.args.momentum;
        }
        if (spec.name === "sgd") { delete spec.args.nesterov; }
        pg.state.runs[index].rule = formatSpec(spec.name, spec.args, rule.sliders);
        pg.focus = index;
        renderCards();
        writeAddress();
        refreshRun(index, performance.now());
      });
      row.appendChild(button);
    });
    if (offers.length) { card.appendChild(row); }
  }

  function scheduleControls(card, index) {
    var run = pg.state.runs[index];
    var spec = parseSpec(run.schedule || "constant");
    var select = element("select", {"data-name": "schedule"});
    [{name: "constant", "arguments": []}].concat(pg.catalog.schedules.filter(function (s) {
      return s.name !== "constant" && s.name !== "inverse_time";
    })).forEach(function (s) {
      var option = element("option", {value: s.name, text: s.name});
      if (s.name === spec.name) { option.selected = true; }
      select.appendChild(option);
    });
    var chosen = pg.catalog.schedules.filter(function (s) { return s.name === spec.name; })[0];
    var inputs = element("span");
    function apply(when) {
      var args = {};
      inputs.querySelectorAll("input").forEach(function (input) {
        args[input.getAttribute("data-name")] = parseValue(input.value.trim());
      });
      run.schedule = select.value === "constant" ? "" : formatSpec(select.value, args, []);
      writeAddress();
      refreshRun(index, when);
    }
    ((chosen && chosen["arguments"]) || []).forEach(function (argument) {
      var value = argument.name in spec.args ? spec.args[argument.name] : argument["default"];
      var input = element("input", {type: "text", size: "6", "data-name": argument.name,
                                    "aria-label": argument.name});
      input.value = String(value);
      input.addEventListener("change", function () { apply(performance.now()); });
      inputs.appendChild(element("label", {}, [document.createTextNode(argument.name + " "),
                                               input]));
    });
    select.addEventListener("change", function () {
      var picked = pg.catalog.schedules.filter(function (s) { return s.name === select.value; })[0];
      var args = {};
      ((picked && picked["arguments"]) || []).forEach(function (a) {
        args[a.name] = a["default"];
      });
      run.schedule = select.value === "constant" ? "" : formatSpec(select.value, args, []);
      renderCards();
      writeAddress();
      refreshRun(index, performance.now());
    });
    card.appendChild(element("label", {}, [document.createTextNode("schedule "), select]));
    card.appendChild(inputs);
  }

  function averagingControls(card, index) {
    var run = pg.state.runs[index];
    var kind = run.average === "" ? "none" : run.average === "polyak" ? "polyak" : "ema";
    var select = element("select", {"data-name": "average"});
    [["none", "no averaging"], ["ema", "EMA of the weights"], ["polyak", "running mean"]]
      .forEach(function (pair) {
        var option = element("option", {value: pair[0], text: pair[1]});
        if (pair[0] === kind) { option.selected = true; }
        select.appendChild(option);
      });
    select.addEventListener("change", function () {
      run.average = {none: "", ema: String(DECAY["default"]), polyak: "polyak"}[select.value];
      renderCards();
      writeAddress();
      refreshRun(index, performance.now());
    });
    card.appendChild(element("label", {}, [document.createTextNode("averaging "), select]));
    if (kind === "ema") {
      card.appendChild(sliderControl(DECAY, parseValue(run.average), function (value, when) {
        run.average = String(value);
        writeAddress();
        refreshRun(index, when);
      }));
    }
  }

  function renderCards() {
    var holder = document.getElementById("cards");
    holder.innerHTML = "";
    pg.state.runs.forEach(function (run, index) {
      var spec = parseSpec(run.rule);
      var rule = ruleCatalog(spec.name);
      var card = element("fieldset", {"class": "card", "data-run": String(index)});
      var result = pg.runs[index];
      card.style.borderLeftColor = result ? figures.colour(index) : "#999";
      card.addEventListener("pointerdown", function () {
        if (pg.focus !== index) { pg.focus = index; redraw(); }
      });
      var select = element("select", {"data-name": "rule", "aria-label": "optimizer"});
      pg.catalog.rules.forEach(function (r) {
        var option = element("option", {value: r.name, text: r.name});
        if (r.name === spec.name) { option.selected = true; }
        select.appendChild(option);
      });
      if (!rule) {
        select.appendChild(element("option", {value: spec.name, text: spec.name}));
        select.value = spec.name;
      }
      select.addEventListener("change", function () {
        // A new optimizer starts from its own defaults: sgd's lr would be far off for adam.
        run.rule = select.value;
        pg.focus = index;
        renderCards();
        writeAddress();
        refreshRun(index, performance.now());
      });
      var remove = element("button", {type: "button", text: "remove",
                                      "aria-label": "remove this optimizer"});
      remove.disabled = pg.state.runs.length === 1;
      remove.addEventListener("click", function () {
        pg.state.runs.splice(index, 1);
        pg.runs.splice(index, 1);
        pg.focus = 0;
        renderCards();
        refreshAll();
      });
      card.appendChild(element("legend", {text: "optimizer " + (index + 1)}));
      card.appendChild(element("div", {"class": "head"}, [select, remove]));
      if (rule) {
        card.appendChild(element("p", {"class": "facts", text: rule.summary}));
        rule.sliders.forEach(function (slider) {
          card.appendChild(sliderControl(slider, spec.args[slider.name], function (value, when) {
            spec.args[slider.name] = value;
            run.rule = formatSpec(spec.name, spec.args, rule.sliders);
            pg.focus = index;
            writeAddress();
            refreshRun(index, when);
          }));
        });
        theoryButtons(card, index, spec, rule);
      }
      scheduleControls(card, index);
      averagingControls(card, index);
      card.appendChild(element("p", {"class": "problem", role: "status",
                                     text: pg.errors["run" + index] || ""}));
      holder.appendChild(card);
    });
    document.getElementById("add-run").disabled = pg.state.runs.length >= MAX_RUNS;
  }


  function drawFacts() {
    var short = descend.short;
    var facts = document.getElementById("problem-facts");
    var quadratic = pg.problem && pg.problem.quadratic;
    facts.textContent = !pg.problem ? "" : quadratic ?
      "A quadratic: curvatures mu = " + short(quadratic.mu) + " and L = " + short(quadratic.L) +
      " (kappa = " + short(quadratic.kappa) + "). Theory's best: gradient descent lr " +
      short(quadratic.optimal["gradient descent"].lr) + " (rate " +
      short(quadratic.optimal["gradient descent"].rate) + "); heavy ball lr " +
      short(quadratic.optimal["heavy ball"].lr) + ", momentum " +
      short(quadratic.optimal["heavy ball"].momentum) + " (rate " +
      short(quadratic.optimal["heavy ball"].rate) + "); Nesterov lr " +
      short(quadratic.optimal.Nesterov.lr) + ", momentum " +
      short(quadratic.optimal.Nesterov.momentum) + " (rate " +
      short(quadratic.optimal.Nesterov.rate) + ")." : pg.problem.title;
    var last = pg.timings[pg.timings.length - 1];
    var lastRun = last && pg.runs[last.run];
    var what = !last ? "" : lastRun && lastRun.diverged_at !== null ?
      "optimizer " + (last.run + 1) + " diverged at step " + lastRun.diverged_at + " of " +
        pg.state.steps + ", computed" :
      "optimizer " + (last.run + 1) + ": " + last.steps + " steps computed";
    document.getElementById("status").textContent = last ?
      "Last update: " + what + " in " + last.compute_ms.toFixed(1) +
      " ms (" + last.server_ms.toFixed(1) + " ms on the server), redrawn " +
      last.total_ms.toFixed(1) + " ms after the input." : "";
  }

  function showErrors() {
    var box = document.getElementById("errors");
    var seen = {}, messages = [];
    (pg.refused || []).forEach(function (key) {
      messages.push("address: " + key + " is ignored: the page compares at most " + MAX_RUNS +
                    " optimizers (r1 to r" + MAX_RUNS + "), each with a marker and line " +
                    "style of its own; remove one to add another.");
    });
    Object.keys(pg.errors).sort().forEach(function (key) {
      var text = pg.errors[key];
      if (text && !seen[text]) {
        seen[text] = true;
        var page = key.indexOf("page:") === 0;
        messages.push((page ? "page setting " + key.slice(5) : "optimizer " +
                       (Number(key.slice(3)) + 1)) + ": " + text);
      }
    });
    box.innerHTML = "";
    messages.forEach(function (m) { box.appendChild(element("p", {text: m})); });
    box.hidden = !messages.length;
    document.body.setAttribute("data-status", messages.length ? "error" : "ready");
  }

  function redraw() {
    figures.drawContour();
    figures.drawLoss();
    figures.drawEigen();
    figures.drawMap();
    figures.drawReadout();
    drawFacts();
    showErrors();
    document.querySelectorAll(".card").forEach(function (card) {
      var index = Number(card.getAttribute("data-run")), run = pg.runs[index];
      if (run) { card.style.borderLeftColor = figures.colour(index); }
      card.querySelector(".problem").textContent = pg.errors["run" + index] || "";
    });
    pg.updates += 1;
    document.body.setAttribute("data-updates", String(pg.updates));
  }

  // -- hover --------------------------------------------------------------------------------

  function hover(canvasId, describe) {
    var canvas = document.getElementById(canvasId), tip = document.getElementById("tooltip");
    canvas.addEventListener("mousemove", function (event) {
      var plot = canvas.plot, box = canvas.getBoundingClientRect();
      if (!plot) { return; }
      var scale = plot.w / box.width;
      var text = describe(plot, (event.clientX - box.left) * scale,
                          (event.clientY - box.top) * scale);
      tip.hidden = !text;
      if (text) {
        tip.textContent = text;
        tip.style.left = (event.clientX + 14) + "px";
        tip.style.top = (event.clientY + 10) + "px";
      }
    });
    canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  }

  function nearestPoint(plot, px, py) {
    var best = null;
    liveRuns().forEach(function (item) {
      item.run.path.forEach(function (p, k) {
        var d = Math.hypot(plot.X(p[0]) - px, plot.Y(p[1]) - py);
        if (d < 12 && (!best || d < best.d)) { best = {d: d, item: item, k: k, p: p}; }
      });
    });
    return best;
  }

  function installHovers() {
    hover("contour", function (plot, px, py) {
      var at = plot.invert(px, py);
      if (!at.inside) { return null; }
      var near = nearestPoint(plot, px, py);
      if (!near) { return "x = " + short(at.x) + ", y = " + short(at.y); }
      return "optimizer " + (near.item.index + 1) + ", step " + near.k + "\nx = " +
        short(near.p[0]) + ", y = " + short(near.p[1]) + "\nf - f* = " +
        short(near.item.run.loss[near.k]);
    });
    hover("loss", function (plot, px, py) {
      var at = plot.invert(px, py);
      if (!at.inside) { return null; }
      var k = Math.round(at.x);
      var lines = liveRuns().filter(function (item) { return k < item.run.loss.length; })
        .map(function (item) {
          return "optimizer " + (item.index + 1) + ": " + short(item.run.loss[k]);
        });
      return lines.length ? "step " + k + "\n" + lines.join("\n") : null;
    });
    hover("eigen", function (plot, px, py) {
      var at = plot.invert(px, py), focused = focusedRun();
      if (!at.inside || !focused) { return null; }
      var k = Math.round(at.x), theory = focused.run.theory;
      if (k >= theory.errors[0].length) { return null; }
      return "step " + k + "\n" + theory.errors.map(function (e, d) {
        return "direction " + (d + 1) + ": " + short(e[k]) +
          (theory.lines ? " (theory " + short(theory.lines[d][k]) + ")" : "");
      }).join("\n");
    });
    hover("ratemap", function (plot, px, py) {
      var at = plot.invert(px, py), focused = focusedRun();
      if (!at.inside || !focused || !pg.problem || !pg.problem.quadratic) { return null; }
      var maps = pg.problem.quadratic.maps;
      var method = figures.mapMethod(focused.run.theory);
      var i = nearestIndex(maps.betas, at.y), j = nearestIndex(maps.alphas, at.x);
      var rate = maps[method][i][j];
      return "lr = " + short(maps.alphas[j]) + ", momentum = " + short(maps.betas[i]) +
        "\nrate = " + (rate >= 1 ? "diverges" : short(rate));
    });
  }

  function nearestIndex(values, x) {
    var best = 0;
    values.forEach(function (v, i) { if (Math.abs(v - x) < Math.abs(values[best] - x)) { best = i; } });
    return best;
  }

  // -- dragging the start, clicking the rate map -------------------------------------------

  function canvasPoint(canvas, event) {
    var plot = canvas.plot, box = canvas.getBoundingClientRect(), scale = plot.w / box.width;
    return {x: (event.clientX - box.left) * scale, y: (event.clientY - box.top) * scale};
  }

  // A number rounded to a thousandth of ``span``: enough for a start point, short in a link.
  function toGrid(value, span) {
    var step = Math.pow(10, Math.floor(Math.log10(span)) - 3);
    return Number((Math.round(value / step) * step).toPrecision(12));
  }

  function installDrag() {
    var canvas = document.getElementById("contour");
    function nearStart(point) {
      var start = figures.startPoint(), plot = canvas.plot;
      return start && plot &&
        Math.hypot(plot.X(start[0]) - point.x, plot.Y(start[1]) - point.y) < 12;
    }
    // On a touch screen a finger on the dot drags it; anywhere else it scrolls the page.
    canvas.addEventListener("touchstart", function (event) {
      var touch = event.touches[0];
      if (canvas.plot && touch && nearStart(canvasPoint(canvas, touch))) {
        event.preventDefault();
      }
    }, {passive: false});
    canvas.addEventListener("pointerdown", function (event) {
      if (!canvas.plot || !nearStart(canvasPoint(canvas, event))) { return; }
      pg.dragging = true;
      canvas.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    canvas.addEventListener("pointermove", function (event) {
      var point = canvasPoint(canvas, event);
      if (!pg.dragging) {
        canvas.style.cursor = canvas.plot && nearStart(point) ? "grab" : "";
        return;
      }
      var plot = canvas.plot, at = plot.invert(point.x, point.y), b = pg.problem.bounds;
      var x = Math.min(b[0][1], Math.max(b[0][0], at.x));
      var y = Math.min(b[1][1], Math.max(b[1][0], at.y));
      pg.state.start = toGrid(x, b[0][1] - b[0][0]) + "," + toGrid(y, b[1][1] - b[1][0]);
      writeAddress();
      var now = performance.now();
      pg.state.runs.forEach(function (_, i) { refreshRun(i, now); });
      redraw();
    });
    function stop() {
      if (!pg.dragging) { return; }
      pg.dragging = false;
      redraw();
    }
    canvas.addEventListener("pointerup", stop);
    canvas.addEventListener("pointercancel", stop);
  }

  function installMapClick() {
    var canvas = document.getElementById("ratemap");
    canvas.addEventListener("click", function (event) {
      var focused = focusedRun(), plot = canvas.plot;
      if (!plot || !focused || !focused.run.theory || !focused.run.theory.method) { return; }
      var point = canvasPoint(canvas, event), at = plot.invert(point.x, point.y);
      if (!at.inside) { return; }
      var index = focused.index, run = pg.state.runs[index], spec = parseSpec(run.rule);
      var rule = ruleCatalog(spec.name);
      if (!rule) { return; }
      // Three significant digits: finer than one cell of the map.
      spec.args.lr = Number(at.x.toPrecision(3));
      spec.args.momentum = Math.max(0, Number(at.y.toPrecision(3)));
      run.rule = formatSpec(spec.name, spec.args, rule.sliders);
      pg.focus = index;
      renderCards();
      writeAddress();
      refreshRun(index, performance.now());
    });
  }

  // -- start ------------------------------------------------------------------------------

  function start() {
    pg.state = readAddress();
    fetch("/api/catalog").then(function (r) { return r.json(); }).then(function (catalog) {
      pg.catalog = catalog;
      renderProblem();
      renderCards();
      installHovers();
      installDrag();
      installMapClick();
      window.addEventListener("resize", function () {
        // Canvases follow their column: redraw once per frame while the window resizes.
        if (!pg.resizing) {
          pg.resizing = true;
          window.requestAnimationFrame(function () { pg.resizing = false; redraw(); });
        }
      });
      document.getElementById("add-run").addEventListener("click", function () {
        if (pg.state.runs.length >= MAX_RUNS) { return; }
        pg.state.runs.push({rule: "adam:lr=0.1", schedule: "", average: ""});
        pg.focus = pg.state.runs.length - 1;
        renderCards();
        refreshAll();
      });
      refreshAll();
    }, function () {
      pg.errors["page:problem"] = "the playground server is not reachable";
      showErrors();
    });
  }

  start();
})();
