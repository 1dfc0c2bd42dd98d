// The playground page. It keeps the settings (in the address bar), asks the server for every
// number, and draws what comes back: no optimizer or theory formula is computed here.
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
  var MARKERS = ["circle", "square", "triangle", "diamond"];

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
                 seed: query.get("seed") || "0", tol: query.get("tol") || "1e-6", runs: []};
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
    var pairs = [["problem", s.problem], ["steps", s.steps], ["seed", s.seed], ["tol", s.tol]];
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
                                ["steps", s.steps], ["seed", s.seed], ["tol", s.tol]]);
  }

  function refreshProblem(since) {
    request("problem", problemUrl(), since, function (answer) {
      if (answer.ok) {
        pg.problem = answer.body;
        delete pg.errors.problem;
      } else {
        pg.problem = null;
        pg.errors.problem = answer.body.error;
      }
      renderCards();
      redraw();
    });
  }

  function refreshRun(index, since) {
    var run = pg.state.runs[index];
    request("run" + index, runUrl(run), since, function (answer, began, sent) {
      if (answer.ok) {
        pg.runs[index] = answer.body;
        delete pg.errors["run" + index];
      } else {
        pg.runs[index] = null;
        pg.errors["run" + index] = answer.body.error;
      }
      redraw();
      if (answer.ok) {
        var now = performance.now();
        pg.timings.push({run: index, server_ms: answer.body.server_ms,
                         compute_ms: answer.body.compute_ms, fetch_ms: now - sent,
                         total_ms: now - began, steps: answer.body.steps});
        if (pg.timings.length > 200) { pg.timings.shift(); }
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

  function element(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attributes[key]; } else {
        node.setAttribute(key, attributes[key]);
      }
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

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

  function short(value) {
    if (value === null || value === undefined) { return "-"; }
    if (typeof value !== "number") { return String(value); }
    if (value === 0) { return "0"; }
    var size = Math.abs(value);
    return size >= 1e4 || size < 1e-3 ? value.toExponential(2) : String(Number(value.toPrecision(3)));
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
        // Full precision: at the optimum the rate has a kink, so rounding would move it.
        spec.args.lr = best.lr;
        if (offer[1] !== "gradient descent" || spec.name !== "sgd") {
          spec.args.momentum = best.momentum;
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
      card.style.borderLeftColor = result ? result.color : "#999";
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
        var lr = spec.args.lr;
        run.rule = select.value + (typeof lr === "number" ? ":lr=" + lr : "");
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

  // -- drawing ------------------------------------------------------------------------------

  function niceTicks(low, high, log) {
    var ticks = [];
    if (log) {
      var first = Math.floor(Math.log10(low)), last = Math.ceil(Math.log10(high));
      var every = Math.max(1, Math.ceil((last - first) / 7));
      for (var e = first; e <= last; e += every) {
        var v = Math.pow(10, e);
        if (v >= low * 0.999 && v <= high * 1.001) { ticks.push(v); }
      }
      return ticks;
    }
    var raw = (high - low) / 6, size = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (f) { return f * size; })
      .filter(function (s) { return s >= raw; })[0];
    for (var t = Math.ceil(low / step) * step; t <= high + 1e-9 * step; t += step) {
      ticks.push(Math.abs(t) < 1e-12 * step ? 0 : t);
    }
    return ticks;
  }

  function tickLabel(value, log) {
    if (log) { return "1e" + Math.round(Math.log10(value)); }
    return short(value);
  }

  // A plot area on a canvas: data limits, linear or log axes, and the mapping to pixels.
  function Plot(canvas, limits) {
    var dpr = window.devicePixelRatio || 1;
    if (!canvas.dataset.width) {
      canvas.dataset.width = canvas.width;
      canvas.dataset.height = canvas.height;
    }
    this.w = Number(canvas.dataset.width);
    this.h = Number(canvas.dataset.height);
    canvas.width = this.w * dpr;
    canvas.height = this.h * dpr;
    canvas.style.width = this.w + "px";
    this.ctx = canvas.getContext("2d");
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.ctx.clearRect(0, 0, this.w, this.h);
    this.m = {l: 62, r: 14, t: 24, b: 42};
    this.lim = limits;
    canvas.plot = this;
  }

  Plot.prototype.fx = function (v) { return this.lim.xlog ? Math.log10(v) : v; };
  Plot.prototype.fy = function (v) { return this.lim.ylog ? Math.log10(v) : v; };
  Plot.prototype.X = function (v) {
    var l = this.lim;
    return this.m.l + (this.fx(v) - this.fx(l.x0)) / (this.fx(l.x1) - this.fx(l.x0)) *
      (this.w - this.m.l - this.m.r);
  };
  Plot.prototype.Y = function (v) {
    var l = this.lim;
    return this.h - this.m.b - (this.fy(v) - this.fy(l.y0)) / (this.fy(l.y1) - this.fy(l.y0)) *
      (this.h - this.m.t - this.m.b);
  };
  Plot.prototype.invert = function (px, py) {
    var l = this.lim, m = this.m;
    var tx = (px - m.l) / (this.w - m.l - m.r), ty = (this.h - m.b - py) / (this.h - m.t - m.b);
    var x = this.fx(l.x0) + tx * (this.fx(l.x1) - this.fx(l.x0));
    var y = this.fy(l.y0) + ty * (this.fy(l.y1) - this.fy(l.y0));
    return {x: l.xlog ? Math.pow(10, x) : x, y: l.ylog ? Math.pow(10, y) : y,
            inside: tx >= 0 && tx <= 1 && ty >= 0 && ty <= 1};
  };
  Plot.prototype.clip = function () {
    var c = this.ctx;
    c.save();
    c.beginPath();
    c.rect(this.m.l, this.m.t, this.w - this.m.l - this.m.r, this.h - this.m.t - this.m.b);
    c.clip();
  };
  Plot.prototype.axes = function (title, xlabel, ylabel) {
    var c = this.ctx, l = this.lim, self = this;
    c.strokeStyle = "#9aa3b5";
    c.lineWidth = 1;
    c.strokeRect(this.m.l, this.m.t, this.w - this.m.l - this.m.r, this.h - this.m.t - this.m.b);
    c.fillStyle = "#1d2330";
    c.font = "11px sans-serif";
    c.textAlign = "center";
    niceTicks(Math.min(l.x0, l.x1), Math.max(l.x0, l.x1), l.xlog).forEach(function (t) {
      var x = self.X(t);
      c.fillText(tickLabel(t, l.xlog), x, self.h - self.m.b + 14);
      c.beginPath(); c.moveTo(x, self.h - self.m.b); c.lineTo(x, self.h - self.m.b + 4);
      c.stroke();
    });
    c.textAlign = "right";
    niceTicks(l.y0, l.y1, l.ylog).forEach(function (t) {
      var y = self.Y(t);
      c.fillText(tickLabel(t, l.ylog), self.m.l - 6, y + 4);
      c.beginPath(); c.moveTo(self.m.l - 4, y); c.lineTo(self.m.l, y); c.stroke();
    });
    c.textAlign = "center";
    c.fillText(xlabel, this.m.l + (this.w - this.m.l - this.m.r) / 2, this.h - 8);
    c.font = "12px sans-serif";
    c.fillText(title, this.w / 2, 15);
    c.save();
    c.translate(13, this.m.t + (this.h - this.m.t - this.m.b) / 2);
    c.rotate(-Math.PI / 2);
    c.font = "11px sans-serif";
    c.fillText(ylabel, 0, 0);
    c.restore();
  };
  Plot.prototype.line = function (xs, ys, style) {
    var c = this.ctx, started = false, l = this.lim;
    c.strokeStyle = style.color;
    c.lineWidth = style.width || 1.4;
    c.setLineDash(style.dash || []);
    c.lineJoin = "round";
    c.lineCap = "round";
    c.beginPath();
    for (var i = 0; i < xs.length; i++) {
      var x = xs[i], y = ys[i];
      var bad = x === null || y === null || !isFinite(x) || !isFinite(y) ||
        (l.ylog && y <= 0) || (l.xlog && x <= 0);
      if (bad) { started = false; continue; }
      if (started) { c.lineTo(this.X(x), this.Y(y)); } else {
        c.moveTo(this.X(x), this.Y(y));
        started = true;
      }
    }
    c.stroke();
    c.setLineDash([]);
  };
  Plot.prototype.marker = function (x, y, shape, fill, size) {
    var c = this.ctx, px = this.X(x), py = this.Y(y), r = size || 5;
    c.fillStyle = fill;
    c.strokeStyle = "#000";
    c.lineWidth = 1;
    c.beginPath();
    if (shape === "square") { c.rect(px - r, py - r, 2 * r, 2 * r); } else if (
      shape === "triangle") {
      c.moveTo(px, py - r * 1.2); c.lineTo(px + r * 1.1, py + r * 0.8);
      c.lineTo(px - r * 1.1, py + r * 0.8); c.closePath();
    } else if (shape === "diamond") {
      c.moveTo(px, py - r * 1.3); c.lineTo(px + r, py); c.lineTo(px, py + r * 1.3);
      c.lineTo(px - r, py); c.closePath();
    } else if (shape === "star") {
      for (var k = 0; k < 10; k++) {
        var radius = k % 2 ? r * 0.45 : r, angle = -Math.PI / 2 + k * Math.PI / 5;
        c.lineTo(px + radius * Math.cos(angle), py + radius * Math.sin(angle));
      }
      c.closePath();
    } else { c.arc(px, py, r, 0, 2 * Math.PI); }
    c.fill();
    c.stroke();
  };
  Plot.prototype.image = function (grid, colour) {
    // grid[i][j]: row i from the bottom (y low) up; column j from x0 to x1.
    var rows = grid.length, cols = grid[0].length;
    var off = document.createElement("canvas");
    off.width = cols;
    off.height = rows;
    var octx = off.getContext("2d"), img = octx.createImageData(cols, rows);
    for (var i = 0; i < rows; i++) {
      for (var j = 0; j < cols; j++) {
        var rgb = colour(grid[i][j]), at = 4 * ((rows - 1 - i) * cols + j);
        img.data[at] = rgb[0]; img.data[at + 1] = rgb[1]; img.data[at + 2] = rgb[2];
        img.data[at + 3] = 255;
      }
    }
    octx.putImageData(img, 0, 0);
    var c = this.ctx;
    c.imageSmoothingEnabled = true;
    c.drawImage(off, this.X(this.lim.x0), this.Y(this.lim.y1), this.X(this.lim.x1) -
                this.X(this.lim.x0), this.Y(this.lim.y0) - this.Y(this.lim.y1));
  };

  // Draws with ``paint(plot)`` once per ``key`` and ``data`` into an offscreen canvas of the
  // same size, then copies it: for the parts of a figure that a slider does not move.
  Plot.prototype.layer = function (key, data, paint) {
    var canvas = this.ctx.canvas;
    canvas.layers = canvas.layers || {};
    var cached = canvas.layers[key];
    if (!cached || cached.data !== data || cached.width !== canvas.width) {
      var off = document.createElement("canvas");
      off.width = canvas.width;
      off.height = canvas.height;
      off.dataset.width = String(this.w);
      off.dataset.height = String(this.h);
      var layer = new Plot(off, this.lim);
      paint(layer);
      cached = canvas.layers[key] = {data: data, width: canvas.width, image: off};
    }
    this.ctx.save();
    this.ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.ctx.drawImage(cached.image, 0, 0);
    this.ctx.restore();
  };

  function dashFor(runs, index) {
    // A second run of the same optimizer family in one figure gets a dashed line.
    var family = runs[index].family, seen = 0;
    for (var i = 0; i < index; i++) { if (runs[i] && runs[i].family === family) { seen++; } }
    return [[], [8, 4], [2, 3], [8, 3, 2, 3]][seen % 4];
  }

  function liveRuns() {
    return pg.runs.map(function (run, index) { return {run: run, index: index}; })
      .filter(function (item) { return item.run; });
  }

  function drawContour() {
    var canvas = document.getElementById("contour");
    var problem = pg.problem;
    if (!problem) { new Plot(canvas, {x0: 0, x1: 1, y0: 0, y1: 1}); return; }
    var b = problem.bounds;
    var plot = new Plot(canvas, {x0: b[0][0], x1: b[0][1], y0: b[1][0], y1: b[1][1]});
    // The surface and its contours change only with the problem: drawn once, then copied.
    plot.layer("surface", problem, function (layer) {
      layer.image(problem.shade, function (s) {
        var g = Math.round(250 - 105 * s);
        return [g, g, Math.min(255, g + 4)];
      });
      layer.clip();
      problem.contours.forEach(function (line) {
        layer.line(line.map(function (p) { return p[0]; }),
                   line.map(function (p) { return p[1]; }),
                   {color: "rgba(60, 64, 72, 0.45)", width: 0.6});
      });
      layer.ctx.restore();
    });
    plot.clip();
    var runs = liveRuns(), count = runs.length;
    runs.forEach(function (item, order) {
      // Widest first: each later, narrower path leaves the earlier ones showing around it.
      var path = item.run.path;
      plot.line(path.map(function (p) { return p[0]; }), path.map(function (p) { return p[1]; }),
                {color: item.run.color, width: 1.4 + 1.25 * (count - 1 - order),
                 dash: dashFor(pg.runs, item.index)});
      if (item.run.averaged_path) {
        var avg = item.run.averaged_path;
        plot.line(avg.map(function (p) { return p[0]; }), avg.map(function (p) { return p[1]; }),
                  {color: "#ffffff", width: 4});
        plot.line(avg.map(function (p) { return p[0]; }), avg.map(function (p) { return p[1]; }),
                  {color: item.run.color, width: 2, dash: [6, 4]});
      }
    });
    problem.minima.forEach(function (m) { plot.marker(m[0], m[1], "star", "#f2c12e", 9); });
    plot.marker(problem.start[0], problem.start[1], "circle", "#000", 4);
    runs.forEach(function (item, order) {
      var end = item.run.path[item.run.path.length - 1];
      plot.marker(end[0], end[1], MARKERS[order % MARKERS.length], item.run.color, 5);
    });
    plot.ctx.restore();
    plot.axes(problem.title, "x", "y");
  }

  function positiveRange(arrays, decades) {
    var top = -Infinity, bottom = Infinity;
    arrays.forEach(function (values) {
      values.forEach(function (v) {
        if (v !== null && v > 0 && isFinite(v)) { top = Math.max(top, v); bottom = Math.min(bottom, v); }
      });
    });
    if (!isFinite(top)) { return null; }
    return {low: Math.max(bottom, top * Math.pow(10, -decades)) / 2, high: top * 2};
  }

  function finiteRange(arrays) {
    var top = -Infinity, bottom = Infinity;
    arrays.forEach(function (values) {
      values.forEach(function (v) {
        if (v !== null && isFinite(v)) { top = Math.max(top, v); bottom = Math.min(bottom, v); }
      });
    });
    if (!isFinite(top)) { return null; }
    var pad = (top - bottom) * 0.05 || 1;
    return {low: bottom - pad, high: top + pad};
  }

  function drawLoss() {
    var canvas = document.getElementById("loss");
    var runs = liveRuns();
    var known = pg.problem && pg.problem.minimum_value !== null;
    var series = [];
    runs.forEach(function (item) {
      series.push(item.run.loss);
      if (item.run.averaged_loss) { series.push(item.run.averaged_loss); }
    });
    var range = known ? positiveRange(series, 14) : finiteRange(series);
    var longest = Math.max.apply(null, [1].concat(runs.map(function (i) { return i.run.steps; })));
    if (!range) { new Plot(canvas, {x0: 0, x1: 1, y0: 0, y1: 1}); return; }
    var plot = new Plot(canvas, {x0: 0, x1: longest, y0: range.low, y1: range.high,
                                 ylog: known});
    plot.clip();
    if (known) {
      var tol = Number(pg.state.tol);
      plot.line([0, longest], [tol, tol], {color: "#000", width: 1, dash: [2, 3]});
    }
    runs.forEach(function (item) {
      var steps = item.run.loss.map(function (_, k) { return k; });
      plot.line(steps, item.run.loss, {color: item.run.color, width: 1.6,
                                       dash: dashFor(pg.runs, item.index)});
      if (item.run.averaged_loss) {
        plot.line(steps, item.run.averaged_loss, {color: item.run.color, width: 2.2,
                                                  dash: [6, 4]});
      }
    });
    plot.ctx.restore();
    plot.axes(known ? "loss above the minimum" : "loss (this problem has no minimum)", "step",
              known ? "f - f*" : "f");
    document.getElementById("loss-caption").textContent = known ?
      "Loss above the minimum, f - f*, against step (log scale); dotted: the tolerance " +
      pg.state.tol + "; dashed: averaged weights." :
      "The loss against step: this problem has no minimum, and a run escapes as it falls.";
  }

  function focusedRun() {
    var item = pg.runs[pg.focus];
    if (item && item.theory) { return {run: item, index: pg.focus}; }
    var covered = liveRuns().filter(function (i) { return i.run.theory && i.run.theory.method; });
    return covered[0] || liveRuns().filter(function (i) { return i.run.theory; })[0] || null;
  }

  function drawEigen() {
    var figure = document.getElementById("eigen-figure");
    var quadratic = pg.problem && pg.problem.quadratic;
    var focused = focusedRun();
    figure.hidden = !(quadratic && focused);
    if (figure.hidden) { return; }
    var canvas = document.getElementById("eigen");
    var theory = focused.run.theory, lambdas = quadratic.eigenvalues;
    var range = positiveRange(theory.errors.concat(theory.lines || []), 14);
    if (!range) { new Plot(canvas, {x0: 0, x1: 1, y0: 0, y1: 1}); return; }
    var plot = new Plot(canvas, {x0: 0, x1: Math.max(1, focused.run.steps), y0: range.low,
                                 y1: range.high, ylog: true});
    plot.clip();
    var dashes = [[], [2, 3]];
    theory.errors.forEach(function (errors, d) {
      var steps = errors.map(function (_, k) { return k; });
      plot.line(steps, errors, {color: focused.run.color, width: 2, dash: dashes[d % 2]});
      if (theory.lines) {
        plot.line(steps, theory.lines[d], {color: "#000", width: 1, dash: [7, 4]});
      }
    });
    plot.ctx.restore();
    plot.axes("error along each eigen-direction: optimizer " + (focused.index + 1), "step",
              "|q_i . (x - x*)|");
    var words = "Optimizer " + (focused.index + 1) + " (" + focused.run.rule + "): the error " +
      "along each eigen-direction (solid: lambda = " + short(lambdas[0]) + ", dotted: lambda = " +
      short(lambdas[1]) + ").";
    if (theory.lines) {
      words += " Dashed: theory, |e_i(0)| r_i^k with r_i = " +
        theory.directions.map(short).join(" and ") + " (" + theory.method + ").";
    } else {
      words += " Theory's rate covers gradient descent, heavy-ball momentum and Nesterov at a " +
        "constant learning rate without weight decay, on the full data.";
    }
    document.getElementById("eigen-caption").textContent = words +
      " Click an optimizer's settings to show its directions.";
  }

  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function viridis(t) {
    var x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), i = Math.min(
      VIRIDIS.length - 2, Math.floor(x)), f = x - i;
    return [0, 1, 2].map(function (k) {
      return Math.round(VIRIDIS[i][k] + f * (VIRIDIS[i + 1][k] - VIRIDIS[i][k]));
    });
  }

  function drawMap() {
    var figure = document.getElementById("map-figure");
    var quadratic = pg.problem && pg.problem.quadratic;
    var focused = focusedRun();
    var theory = focused && focused.run.theory;
    figure.hidden = !(quadratic && theory && theory.method);
    if (figure.hidden) { return; }
    var maps = quadratic.maps;
    var method = theory.method === "Nesterov" ? "Nesterov" : "heavy ball";
    var alphas = maps.alphas, betas = maps.betas;
    var plot = new Plot(document.getElementById("ratemap"), {
      x0: alphas[0], x1: alphas[alphas.length - 1], y0: betas[0], y1: betas[betas.length - 1]});
    plot.layer(method, maps, function (layer) {
      layer.image(maps[method], function (rate) {
        return rate >= 1 ? [232, 232, 232] : viridis(Math.pow(rate, 4));
      });
    });
    plot.clip();
    var best = quadratic.optimal[method];
    plot.marker(best.lr, best.momentum, "star", "#f2c12e", 9);
    var lr = Math.min(theory.lr, alphas[alphas.length - 1]);
    plot.marker(lr, theory.momentum, "circle", "#ffffff", 6);
    plot.ctx.restore();
    plot.axes("convergence rate of " + method + " on this quadratic", "step size (lr)",
              "momentum");
    document.getElementById("map-caption").textContent = "The linear rate theory predicts " +
      "for " + method + " at every step size and momentum (darker converges faster; grey " +
      "diverges). White dot: optimizer " + (focused.index + 1) + " at lr " + short(theory.lr) +
      ", momentum " + short(theory.momentum) + ", rate " + short(theory.predicted) +
      (theory.lr > alphas[alphas.length - 1] ? " (its lr is beyond the right edge)" : "") +
      "; star: the optimum, lr " + short(best.lr) + ", momentum " + short(best.momentum) +
      ", rate " + short(best.rate) + ".";
  }

  function drawReadout() {
    var body = document.querySelector("#readout tbody");
    body.innerHTML = "";
    document.getElementById("tolerance-header").textContent =
      "steps until f - f* stays below " + pg.state.tol;
    pg.state.runs.forEach(function (state, index) {
      var run = pg.runs[index];
      var row = element("tr", {"data-run": String(index)});
      var swatch = element("span", {"class": "swatch"});
      swatch.style.background = run ? run.color : "#ccc";
      // The lab's labelling rule (descend.specs.ContenderSpec): parts joined by "+", a
      // constant rate adds nothing.
      var label = [state.rule].concat(
        state.schedule && state.schedule !== "constant" ? [state.schedule] : [],
        state.average ? ["average(" + state.average + ")"] : []).join("+");
      var theory = run && run.theory;
      var steps = !run ? "-" : run.diverged_at !== null ? "diverged at step " + run.diverged_at :
        run.steps_to_tolerance === null ? "not within " + run.steps : String(run.steps_to_tolerance);
      if (run && run.escape !== null && run.escape !== undefined) {
        steps = "escapes at step " + run.escape;
      }
      var cells = [element("td", {}, [swatch]), element("td", {text: label}),
                   element("td", {"class": "num", text: run ? short(run.final) : "-"}),
                   element("td", {"class": "num", text: steps}),
                   element("td", {"class": "num predicted",
                                  text: theory && theory.predicted !== null ?
                                    theory.predicted.toFixed(4) : "-"}),
                   element("td", {"class": "num measured",
                                  text: theory && theory.measured !== null ?
                                    theory.measured.toFixed(4) : "-"}),
                   element("td", {"class": "num", text: run ? run.compute_ms.toFixed(1) + " ms" : "-"})];
      cells.forEach(function (cell) { row.appendChild(cell); });
      if (theory) {
        row.setAttribute("data-predicted", String(theory.predicted));
        row.setAttribute("data-measured", String(theory.measured));
      }
      body.appendChild(row);
    });
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
    document.getElementById("status").textContent = last ?
      "Last update: " + last.steps + " steps computed in " + last.compute_ms.toFixed(1) +
      " ms (" + last.server_ms.toFixed(1) + " ms on the server), redrawn " +
      last.total_ms.toFixed(1) + " ms after the input." : "";
  }

  function showErrors() {
    var box = document.getElementById("errors");
    var seen = {}, messages = [];
    Object.keys(pg.errors).sort().forEach(function (key) {
      var text = pg.errors[key];
      if (text && !seen[text]) {
        seen[text] = true;
        messages.push(key === "problem" ? text : "optimizer " + (Number(key.slice(3)) + 1) +
                      ": " + text);
      }
    });
    box.innerHTML = "";
    messages.forEach(function (m) { box.appendChild(element("p", {text: m})); });
    box.hidden = !messages.length;
    document.body.setAttribute("data-status", messages.length ? "error" : "ready");
  }

  function redraw() {
    drawContour();
    drawLoss();
    drawEigen();
    drawMap();
    drawReadout();
    showErrors();
    document.querySelectorAll(".card").forEach(function (card) {
      var index = Number(card.getAttribute("data-run")), run = pg.runs[index];
      if (run) { card.style.borderLeftColor = run.color; }
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
      var method = focused.run.theory.method === "Nesterov" ? "Nesterov" : "heavy ball";
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

  // -- start ------------------------------------------------------------------------------

  function start() {
    pg.state = readAddress();
    fetch("/api/catalog").then(function (r) { return r.json(); }).then(function (catalog) {
      pg.catalog = catalog;
      renderProblem();
      renderCards();
      installHovers();
      document.getElementById("add-run").addEventListener("click", function () {
        if (pg.state.runs.length >= MAX_RUNS) { return; }
        pg.state.runs.push({rule: "adam:lr=0.1", schedule: "", average: ""});
        pg.focus = pg.state.runs.length - 1;
        renderCards();
        refreshAll();
      });
      refreshAll();
    }, function () {
      pg.errors.problem = "the playground server is not reachable";
      showErrors();
    });
  }

  start();
})();
