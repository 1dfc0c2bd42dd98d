// Drawing for the playground: a plot area on a canvas sized to its column (axes, lines,
// markers, images, cached layers), legends inside the plot, a colour bar, and small shared
// helpers. It draws numbers the server computed; it computes none of its own.
"use strict";

(function () {
  var descend = window.descend = window.descend || {};

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

  function short(value) {
    if (value === null || value === undefined) { return "-"; }
    if (typeof value !== "number") { return String(value); }
    if (value === 0) { return "0"; }
    var size = Math.abs(value);
    return size >= 1e4 || size < 1e-3 ? value.toExponential(2) : String(Number(value.toPrecision(3)));
  }

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

  // The size a canvas is drawn at: its column's width (CSS pixels) and the height its
  // data-aspect asks for; an offscreen layer keeps the size it was given.
  function canvasSize(canvas) {
    if (canvas.dataset.fixed) {
      return {w: Number(canvas.dataset.width), h: Number(canvas.dataset.height)};
    }
    var aspect = Number(canvas.dataset.aspect || 0.75);
    // Less the canvas's own border (1 px each side).
    var holder = canvas.parentNode, width = holder ? holder.clientWidth - 2 : 0;
    width = Math.round(Math.max(240, Math.min(width > 0 ? width : 480, 900)));
    return {w: width, h: Math.round(width * aspect)};
  }

  // A plot area on a canvas: data limits, linear or log axes, and the mapping to pixels.
  function Plot(canvas, limits, margins) {
    var dpr = window.devicePixelRatio || 1, size = canvasSize(canvas);
    this.w = size.w;
    this.h = size.h;
    canvas.width = Math.round(this.w * dpr);
    canvas.height = Math.round(this.h * dpr);
    if (!canvas.dataset.fixed) {
      canvas.style.width = this.w + "px";
      canvas.style.height = this.h + "px";
    }
    this.ctx = canvas.getContext("2d");
    this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this.ctx.clearRect(0, 0, this.w, this.h);
    this.m = margins || {l: 58, r: 12, t: 22, b: 40};
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
    markerAt(this.ctx, this.X(x), this.Y(y), shape, fill, size);
  };

  function markerAt(c, px, py, shape, fill, size) {
    var r = size || 5;
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
  }
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
      off.dataset.fixed = "1";
      var layer = new Plot(off, this.lim, this.m);
      paint(layer);
      cached = canvas.layers[key] = {data: data, width: canvas.width, image: off};
    }
    this.ctx.save();
    this.ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.ctx.drawImage(cached.image, 0, 0);
    this.ctx.restore();
  };


  // A legend inside the plot area, in the corner given ("ne", "nw", "se", "sw"): each entry
  // {label, color, dash, width} draws a line sample, {label, marker, fill} a marker.
  Plot.prototype.legend = function (entries, corner) {
    if (!entries.length) { return null; }
    var c = this.ctx, m = this.m, pad = 6, row = 15, sample = 26;
    c.font = this.w < 440 ? "10px sans-serif" : "11px sans-serif";  // a phone's narrow plot
    var widest = Math.max.apply(null, entries.map(function (e) {
      return c.measureText(e.label).width;
    }));
    var room = this.w - m.l - m.r - 2 * pad;
    var width = Math.min(room, widest + sample + 3 * pad), height = entries.length * row + pad;
    var left = /w/.test(corner || "ne") ? m.l + pad : this.w - m.r - pad - width;
    var top = /s/.test(corner || "ne") ? this.h - m.b - pad - height : m.t + pad;
    c.save();
    c.fillStyle = "rgba(255, 255, 255, 0.88)";
    c.strokeStyle = "#c4cad6";
    c.lineWidth = 1;
    c.fillRect(left, top, width, height);
    c.strokeRect(left, top, width, height);
    entries.forEach(function (entry, k) {
      var y = top + pad + k * row + row / 2 - 1, x = left + pad;
      if (entry.marker) {
        markerAt(c, x + sample / 2, y, entry.marker, entry.fill, 5);
      } else {
        c.strokeStyle = entry.color;
        c.lineWidth = entry.width || 2;
        c.setLineDash(entry.dash || []);
        c.beginPath(); c.moveTo(x, y); c.lineTo(x + sample, y); c.stroke();
        c.setLineDash([]);
      }
      c.fillStyle = "#1d2330";
      c.textAlign = "left";
      c.fillText(entry.label, x + sample + pad, y + 4, width - sample - 3 * pad);
    }, this);
    c.restore();
    return {left: left, top: top, width: width, height: height};
  };

  // A vertical colour bar right of the plot area: ``colour(value)`` from ``low`` to
  // ``high`` with ticks at ``ticks``, and an ``over`` swatch on top for values beyond it.
  Plot.prototype.colorbar = function (low, high, colour, ticks, title, over) {
    var c = this.ctx, m = this.m, x = this.w - m.r + 14, width = 12;
    var top = m.t + (over ? 26 : 0), bottom = this.h - m.b;
    for (var py = top; py < bottom; py++) {
      var value = low + (high - low) * (bottom - py) / (bottom - top);
      var rgb = colour(value);
      c.fillStyle = "rgb(" + rgb.join(",") + ")";
      c.fillRect(x, py, width, 1.5);
    }
    c.strokeStyle = "#9aa3b5";
    c.lineWidth = 1;
    c.strokeRect(x, top, width, bottom - top);
    c.fillStyle = "#1d2330";
    c.font = "10px sans-serif";
    c.textAlign = "left";
    ticks.forEach(function (t) {
      var py = bottom - (t - low) / (high - low) * (bottom - top);
      c.beginPath(); c.moveTo(x + width, py); c.lineTo(x + width + 3, py); c.stroke();
      c.fillText(short(t), x + width + 5, py + 3);
    });
    if (over) {
      c.fillStyle = "rgb(" + over.rgb.join(",") + ")";
      c.fillRect(x, m.t, width, 18);
      c.strokeRect(x, m.t, width, 18);
      c.fillStyle = "#1d2330";
      c.fillText(over.label, x + width + 5, m.t + 12);
    }
    c.save();
    c.translate(this.w - 6, m.t + (bottom - m.t) / 2);
    c.rotate(-Math.PI / 2);
    c.textAlign = "center";
    c.fillText(title, 0, 0);
    c.restore();
  };

  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function viridis(t) {
    var x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1), i = Math.min(
      VIRIDIS.length - 2, Math.floor(x)), f = x - i;
    return [0, 1, 2].map(function (k) {
      return Math.round(VIRIDIS[i][k] + f * (VIRIDIS[i + 1][k] - VIRIDIS[i][k]));
    });
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


  descend.element = element;
  descend.short = short;
  descend.Plot = Plot;
  descend.viridis = viridis;
  descend.positiveRange = positiveRange;
  descend.finiteRange = finiteRange;
})();
