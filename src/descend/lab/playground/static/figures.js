// The playground's figures and the words beside them: paths over the contours, the loss, the
// error along each eigen-direction, theory's rate map, and the table. Every number drawn or
// written comes from the server's answers in window.playground; the sentences that say why a
// setting converges or diverges are the server's (theory.verdict), quoted, not recomputed.
"use strict";

(function () {
  var descend = window.descend;
  var Plot = descend.Plot, short = descend.short, element = descend.element;
  var MARKERS = ["circle", "square", "triangle", "diamond"];
  // Runs of one optimizer family keep its hue and differ in lightness, the second channel the
  // report's figures use too: the server sends each run its family's shades
  // (descend.lab.palette.lightness_steps), and run k of n takes shade k of n.
  var SHADE_NAMES = ["its colour", "darker", "lighter", "darker still"];
  var GREY = [222, 222, 222];

  function pg() { return window.playground; }

  function liveRuns() {
    return pg().runs.map(function (run, index) { return {run: run, index: index}; })
      .filter(function (item) { return item.run; });
  }

  // How many runs before ``index`` share its optimizer family: which of its shades it takes.
  function styleIndex(index) {
    var runs = pg().runs, family = runs[index] && runs[index].family, seen = 0;
    for (var i = 0; i < index; i++) { if (runs[i] && runs[i].family === family) { seen++; } }
    return seen;
  }

  function familyCount(index) {
    var runs = pg().runs, family = runs[index] && runs[index].family;
    return runs.filter(function (r) { return r && r.family === family; }).length;
  }

  function sharesFamily(index) { return familyCount(index) > 1; }

  // The colour a run is drawn in: its family's, or, beside other runs of the family, its shade.
  function colour(index) {
    var run = pg().runs[index], count = familyCount(index);
    if (!run) { return "#bbb"; }
    var shades = count > 1 && run.shades && run.shades[String(count)];
    return shades ? shades[styleIndex(index)] : run.color;
  }

  // Which run of a shared family this is, in words, for the legend and the table.
  function shadeName(index) { return SHADE_NAMES[styleIndex(index)] || ""; }

  // The lab's labelling rule (descend.specs.ContenderSpec): parts joined by "+", a constant
  // rate adds nothing.
  function runLabel(index) {
    var state = pg().state.runs[index];
    return [state.rule].concat(
      state.schedule && state.schedule !== "constant" ? [state.schedule] : [],
      state.average ? ["average(" + state.average + ")"] : []).join("+");
  }

  function legendEntry(index, width) {
    return {label: (index + 1) + ": " + runLabel(index) +
              (sharesFamily(index) ? " (" + shadeName(index) + ")" : ""),
            color: colour(index), dash: [], width: width || 2};
  }

  // A small line sample (colour and line style) for the table and the cards.
  function sample(index) {
    var ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
    var run = pg().runs[index];
    svg.setAttribute("width", "30");
    svg.setAttribute("height", "10");
    svg.setAttribute("class", "sample");
    svg.setAttribute("data-shade", run ? String(styleIndex(index)) : "0");
    var line = document.createElementNS(ns, "line");
    [["x1", 1], ["y1", 5], ["x2", 29], ["y2", 5], ["stroke-width", 2.5],
     ["stroke", colour(index)]]
      .forEach(function (pair) { line.setAttribute(pair[0], String(pair[1])); });
    svg.appendChild(line);
    return svg;
  }

  function startPoint() {
    var state = pg().state, problem = pg().problem;
    if (state.start) { return state.start.split(",").map(Number); }
    return problem ? problem.start : null;
  }

  function setText(id, text) { document.getElementById(id).textContent = text; }

  function drawContour() {
    var canvas = document.getElementById("contour");
    var problem = pg().problem;
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
                {color: colour(item.index), width: 1.4 + 1.25 * (count - 1 - order)});
      if (item.run.averaged_path) {
        var avg = item.run.averaged_path;
        plot.line(avg.map(function (p) { return p[0]; }), avg.map(function (p) { return p[1]; }),
                  {color: "#ffffff", width: 4});
        plot.line(avg.map(function (p) { return p[0]; }), avg.map(function (p) { return p[1]; }),
                  {color: colour(item.index), width: 2, dash: [6, 4]});
      }
    });
    problem.minima.forEach(function (m) { plot.marker(m[0], m[1], "star", "#f2c12e", 9); });
    runs.forEach(function (item, order) {
      var end = item.run.path[item.run.path.length - 1];
      plot.marker(end[0], end[1], MARKERS[order % MARKERS.length], colour(item.index), 5);
    });
    var start = startPoint();
    plot.marker(start[0], start[1], "circle", "#000", pg().dragging ? 7 : 5);
    plot.ctx.restore();
    plot.axes(problem.title, "x", "y");
    var entries = runs.map(function (item) { return legendEntry(item.index); });
    entries.push({label: "start (drag it)", marker: "circle", fill: "#000"});
    if (problem.minima.length) {
      entries.push({label: "minimum", marker: "star", fill: "#f2c12e"});
    }
    plot.legendBox = plot.legend(entries, "se");
    explainPaths(runs, start);
  }

  function explainPaths(runs, start) {
    var problem = pg().problem, moved = !!pg().state.start;
    var words = runs.map(function (item) {
      var run = item.run, end = run.path[run.path.length - 1];
      if (run.diverged_at !== null) {
        return "Optimizer " + (item.index + 1) + " diverged at step " + run.diverged_at + ".";
      }
      // f - f* says how close a run got; raw end coordinates (6.22e-20) say little.
      return "Optimizer " + (item.index + 1) + (run.final !== null ?
        " ends at f - f* = " + short(run.final) :
        " ends at (" + short(end[0]) + ", " + short(end[1]) + ")") +
        " after " + run.steps + " steps.";
    });
    words.push("Drag the black dot to start from elsewhere; it is at (" + short(start[0]) +
               ", " + short(start[1]) + ")" + (moved ? ", moved from the problem's start (" +
               short(problem.start[0]) + ", " + short(problem.start[1]) + ")." : ", the " +
               "problem's start."));
    setText("paths-explain", words.join(" "));
  }

  function drawLoss() {
    var canvas = document.getElementById("loss");
    var runs = liveRuns();
    var known = pg().problem && pg().problem.minimum_value !== null;
    var series = [];
    runs.forEach(function (item) {
      series.push(item.run.loss);
      if (item.run.averaged_loss) { series.push(item.run.averaged_loss); }
    });
    var range = known ? descend.positiveRange(series, 14) : descend.finiteRange(series);
    var longest = Math.max.apply(null, [1].concat(runs.map(function (i) { return i.run.steps; })));
    if (!range) { new Plot(canvas, {x0: 0, x1: 1, y0: 0, y1: 1}); return; }
    var plot = new Plot(canvas, {x0: 0, x1: longest, y0: range.low, y1: range.high,
                                 ylog: known});
    plot.clip();
    var tol = Number(pg().state.tol);
    if (known) {
      plot.line([0, longest], [tol, tol], {color: "#000", width: 1, dash: [2, 3]});
    }
    var entries = [];
    runs.forEach(function (item) {
      var steps = item.run.loss.map(function (_, k) { return k; });
      plot.line(steps, item.run.loss, {color: colour(item.index), width: 1.8});
      entries.push(legendEntry(item.index));
      if (item.run.averaged_loss) {
        plot.line(steps, item.run.averaged_loss, {color: colour(item.index), width: 2.4,
                                                  dash: [6, 4]});
        entries.push({label: (item.index + 1) + ": averaged weights", color: colour(item.index),
                      dash: [6, 4], width: 2.4});
      }
    });
    if (known) { entries.push({label: "tolerance " + pg().state.tol, color: "#000",
                               dash: [2, 3], width: 1}); }
    plot.ctx.restore();
    plot.axes(known ? "loss above the minimum" : "loss (this problem has no minimum)", "step",
              known ? "f - f*" : "f");
    plot.legend(entries, "ne");
    var words = [known ? "The loss above the minimum on a log scale: a straight line is a " +
                 "constant rate, its slope the log of the factor per step." :
                 "The loss against step: this problem has no minimum, and a run escapes " +
                 "as it falls."];
    runs.forEach(function (item) {
      var run = item.run, name = "Optimizer " + (item.index + 1);
      var verdict = run.theory && run.theory.verdict;
      if (run.diverged_at !== null) {
        words.push(name + " diverged at step " + run.diverged_at + (verdict ? ": " +
                   verdict.sentence : "."));
      } else if (run.escape !== null && run.escape !== undefined) {
        words.push(name + " escapes at step " + run.escape + ".");
      } else if (known && run.steps_to_tolerance !== null) {
        words.push(name + " stays below " + pg().state.tol + " from step " +
                   run.steps_to_tolerance + (run.theory && run.theory.measured !== null ?
                   " (measured rate " + short(run.theory.measured) + ")" : "") + ".");
      } else if (known) {
        words.push(name + " is not below " + pg().state.tol + " within " + run.steps +
                   " steps (f - f* = " + short(run.final) + " at the end).");
      }
    });
    setText("loss-explain", words.join(" "));
  }

  function focusedRun() {
    var item = pg().runs[pg().focus];
    if (item && item.theory) { return {run: item, index: pg().focus}; }
    var covered = liveRuns().filter(function (i) { return i.run.theory && i.run.theory.method; });
    return covered[0] || liveRuns().filter(function (i) { return i.run.theory; })[0] || null;
  }

  function drawEigen() {
    var figure = document.getElementById("eigen-figure");
    var quadratic = pg().problem && pg().problem.quadratic;
    var focused = focusedRun();
    figure.hidden = !(quadratic && focused);
    if (figure.hidden) { return; }
    var canvas = document.getElementById("eigen");
    var theory = focused.run.theory, lambdas = quadratic.eigenvalues;
    var range = descend.positiveRange(theory.errors.concat(theory.lines || []), 14);
    if (!range) { new Plot(canvas, {x0: 0, x1: 1, y0: 0, y1: 1}); return; }
    var plot = new Plot(canvas, {x0: 0, x1: Math.max(1, focused.run.steps), y0: range.low,
                                 y1: range.high, ylog: true});
    plot.clip();
    var dashes = [[], [2, 3]], entries = [];
    theory.errors.forEach(function (errors, d) {
      var steps = errors.map(function (_, k) { return k; });
      plot.line(steps, errors, {color: colour(focused.index), width: 2, dash: dashes[d % 2]});
      entries.push({label: "lambda = " + short(lambdas[d]), color: colour(focused.index),
                    dash: dashes[d % 2]});
      if (theory.lines) {
        plot.line(steps, theory.lines[d], {color: "#000", width: 1, dash: [7, 4]});
      }
    });
    if (theory.lines) { entries.push({label: "theory", color: "#000", dash: [7, 4], width: 1}); }
    plot.ctx.restore();
    plot.axes("error along each eigen-direction: optimizer " + (focused.index + 1), "step",
              "|q_i . (x - x*)|");
    plot.legend(entries, "ne");
    var words = "Optimizer " + (focused.index + 1) + " (" + focused.run.rule + "): the error " +
      "along each eigen-direction of the quadratic.";
    if (theory.lines) {
      words += " Dashed: theory, |e_i(0)| r_i^k with r_i = " +
        theory.directions.map(short).join(" and ") + " (" + theory.method + "). " +
        theory.verdict.sentence;
    } else {
      words += " Theory's rate covers gradient descent, heavy-ball momentum and Nesterov at a " +
        "constant learning rate without weight decay, on the full data.";
    }
    setText("eigen-explain", words + " Click an optimizer's settings to show its directions.");
  }

  function rateColour(rate) {
    return rate >= 1 ? GREY : descend.viridis(Math.pow(rate, 4));
  }

  function mapMethod(theory) { return theory.method === "Nesterov" ? "Nesterov" : "heavy ball"; }

  // Thin white lines where the regime changes between neighbouring cells.
  function regimeEdges(layer, maps, regimes) {
    var codes = regimes.codes, a = maps.alphas, b = maps.betas, c = layer.ctx;
    var da = (a[1] - a[0]) / 2, db = (b[1] - b[0]) / 2;
    c.strokeStyle = "rgba(255, 255, 255, 0.85)";
    c.lineWidth = 1.2;
    c.beginPath();
    for (var i = 0; i < codes.length; i++) {
      for (var j = 0; j < codes[i].length; j++) {
        if (j + 1 < codes[i].length && codes[i][j] !== codes[i][j + 1]) {
          c.moveTo(layer.X(a[j] + da), layer.Y(b[i] - db));
          c.lineTo(layer.X(a[j] + da), layer.Y(b[i] + db));
        }
        if (i + 1 < codes.length && codes[i][j] !== codes[i + 1][j]) {
          c.moveTo(layer.X(a[j] - da), layer.Y(b[i] + db));
          c.lineTo(layer.X(a[j] + da), layer.Y(b[i] + db));
        }
      }
    }
    c.stroke();
  }

  function drawMap() {
    var figure = document.getElementById("map-figure");
    var quadratic = pg().problem && pg().problem.quadratic;
    var focused = focusedRun();
    var theory = focused && focused.run.theory;
    figure.hidden = !(quadratic && theory && theory.method);
    if (figure.hidden) { return; }
    var maps = quadratic.maps, method = mapMethod(theory), regimes = maps.regimes[method];
    var alphas = maps.alphas, betas = maps.betas;
    var plot = new Plot(document.getElementById("ratemap"), {
      x0: alphas[0], x1: alphas[alphas.length - 1], y0: betas[0], y1: betas[betas.length - 1]},
      {l: 58, r: 70, t: 22, b: 40});
    plot.layer(method, maps, function (layer) {
      layer.image(maps[method], rateColour);
      regimeEdges(layer, maps, regimes);
      layer.ctx.font = "bold 12px sans-serif";
      layer.ctx.textAlign = "center";
      regimes.labels.forEach(function (label) {
        var x = layer.X(label.lr), y = layer.Y(label.momentum);
        layer.ctx.lineWidth = 3;
        layer.ctx.strokeStyle = "rgba(255, 255, 255, 0.9)";
        layer.ctx.strokeText(label.regime, x, y);
        layer.ctx.fillStyle = "#1d2330";
        layer.ctx.fillText(label.regime, x, y);
      });
    });
    plot.axes("theory's rate of " + method + " on this quadratic", "step size (lr)",
              "momentum");
    // The marks go over the frame, unclipped: a run at momentum 0 sits on the bottom edge.
    var best = quadratic.optimal[method];
    plot.marker(best.lr, best.momentum, "star", "#f2c12e", 9);
    var lr = Math.min(theory.lr, alphas[alphas.length - 1]);
    plot.marker(lr, theory.momentum, "circle", "#ffffff", 6);
    plot.colorbar(0, 1, rateColour, [0, 0.5, 0.8, 0.9, 0.95, 1], "rate per step",
                  {rgb: GREY, label: ">= 1"});
    plot.legend([{label: "optimizer " + (focused.index + 1), marker: "circle", fill: "#fff"},
                 {label: "optimum", marker: "star", fill: "#f2c12e"}], "ne");
    var names = regimes.labels.map(function (l) { return l.regime; });
    var optimizerWords = "Optimizer " + (focused.index + 1) + " (white dot): lr " +
      short(theory.lr) + ", momentum " + short(theory.momentum) + ", rate " +
      short(theory.predicted) + (theory.lr > alphas[alphas.length - 1] ?
        " (its lr is beyond the right edge)" : "") + ". " + theory.verdict.sentence;
    // Short on purpose: what the map is, then what it says about this setting.
    setText("map-explain", "Theory's rate for " + method + " here (mu = " + short(quadratic.mu) +
      ", L = " + short(quadratic.L) + "): how much the slowest direction's error shrinks per " +
      "step; darker is faster, grey diverges; white lines part the regimes (" +
      names.join(", ") + "). " + optimizerWords + " Star: the optimum, lr " + short(best.lr) +
      ", momentum " + short(best.momentum) + ", rate " + short(best.rate) +
      ". Click the map to move optimizer " + (focused.index + 1) + " there.");
  }

  function drawReadout() {
    var body = document.querySelector("#readout tbody");
    body.innerHTML = "";
    setText("tolerance-header", "steps until f - f* stays below " + pg().state.tol);
    pg().state.runs.forEach(function (state, index) {
      var run = pg().runs[index];
      var row = element("tr", {"data-run": String(index)});
      var theory = run && run.theory;
      var steps = !run ? "-" : run.diverged_at !== null ? "diverged at step " + run.diverged_at :
        run.steps_to_tolerance === null ? "not within " + run.steps : String(run.steps_to_tolerance);
      if (run && run.escape !== null && run.escape !== undefined) {
        steps = "escapes at step " + run.escape;
      }
      var line = run && sharesFamily(index) ? " (" + shadeName(index) + ")" : "";
      var cells = [element("td", {"class": "key"}, [document.createTextNode((index + 1) + " "),
                                                     sample(index)]),
                   element("td", {text: runLabel(index) + line}),
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
  }

  descend.figures = {
    MARKERS: MARKERS, SHADE_NAMES: SHADE_NAMES, colour: colour, liveRuns: liveRuns, focusedRun: focusedRun,
    mapMethod: mapMethod, styleIndex: styleIndex, sample: sample, startPoint: startPoint,
    drawContour: drawContour, drawLoss: drawLoss, drawEigen: drawEigen, drawMap: drawMap,
    drawReadout: drawReadout
  };
})();
