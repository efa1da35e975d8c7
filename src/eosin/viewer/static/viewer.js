// eosin slide page: Leaflet deep zoom in level-0 coordinates, store layers, QuPath-compatible annotation.
// Coordinates: Leaflet's latLng(lat, lng) holds level-0 pixels (y, x); a custom CRS maps them to display pixels,
// stretching the coarser axis when the slide's pixels are not square.
(function () {
  "use strict";
  const sid = document.body.dataset.sid;
  const $ = (id) => document.getElementById(id);
  const api = (path) => `/api/slides/${encodeURIComponent(sid)}${path}`;
  const viewer = (window.eosinViewer = { ready: false, overlays: {}, annotations: [], tileRequests: [] });

  function status(message, isError) {
    const el = $("status");
    el.textContent = message;
    el.className = isError ? "error" : "";
  }

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    let body = null;
    try { body = await response.json(); } catch (e) { body = { error: `${response.status} ${response.statusText}` }; }
    if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
    return body;
  }

  function hexToRgb(hex) {
    const v = parseInt(hex.slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }
  function rgbToCss(c) {
    if (!Array.isArray(c)) return "#ffd400";
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }
  function featureColor(feature) {
    const cls = feature.properties && feature.properties.classification;
    if (cls && cls.color !== undefined) {
      if (Array.isArray(cls.color)) return rgbToCss(cls.color);
      if (typeof cls.color === "number") { // QuPath's packed RGB
        const v = cls.color >>> 0;
        return rgbToCss([(v >> 16) & 255, (v >> 8) & 255, v & 255]);
      }
    }
    return "#ffd400";
  }
  const vectorOptions = {
    style: (feature) => ({ color: featureColor(feature), weight: 2, fillOpacity: 0.15 }),
    pointToLayer: (feature, latlng) =>
      L.circleMarker(latlng, { radius: 6, color: featureColor(feature), weight: 2, fillOpacity: 0.6 }),
    onEachFeature: (feature, layer) => {
      const cls = feature.properties && feature.properties.classification;
      if (cls && cls.name) layer.bindTooltip(String(cls.name));
    },
  };

  // ------------------------------------------------------------------ map
  async function start() {
    let info;
    try {
      info = await getJSON(api(""));
    } catch (e) {
      document.getElementById("map").innerHTML = `<p class="error">${e.message}</p>`;
      return;
    }
    viewer.info = info;
    const dz = info.deepzoom;
    const M = dz.max_zoom;
    const f = 1 / Math.pow(2, M);
    const crs = L.extend({}, L.CRS.Simple, {
      transformation: new L.Transformation(dz.aspect[0] * f, 0, dz.aspect[1] * f, 0),
    });
    const map = L.map("map", {
      crs, minZoom: 0, maxZoom: M + 2, zoomSnap: 0.25, zoomDelta: 1, attributionControl: false,
      doubleClickZoom: true, preferCanvas: false,
    });
    viewer.map = map;
    const slideBounds = L.latLngBounds([0, 0], [dz.height, dz.width]);
    const tiles = L.tileLayer(info.tile_url, {
      tileSize: dz.tile_size, minZoom: 0, maxNativeZoom: M, maxZoom: M + 2, noWrap: true,
      bounds: slideBounds, keepBuffer: 1,
    });
    tiles.on("tileloadstart", (e) => viewer.tileRequests.push(e.tile.src));
    tiles.on("load", () => { viewer.tilesLoaded = true; });
    tiles.addTo(map);
    viewer.tiles = tiles;
    map.fitBounds(slideBounds);
    const mpp = info.mpp[0];
    $("meta").textContent = `${dz.width} × ${dz.height} px · ` +
      (dz.display_mpp ? `${dz.mpp_x.toPrecision(4)} × ${dz.mpp_y.toPrecision(4)} µm/px` : "mpp unknown: no scale bar") +
      (info.problems.length ? ` · ${info.problems.length} doctor finding(s)` : "");
    if (dz.display_mpp) addScaleBar(map, dz.display_mpp, M);
    buildLayers(info, map);
    setUpAnnotation(info, map);
    map.on("click", (e) => { if (!drawing.tool) showValues(e.latlng); });
    viewer.ready = true;
  }

  function addScaleBar(map, displayMpp, M) {
    const Scale = L.Control.extend({
      options: { position: "bottomleft" },
      onAdd() {
        this._div = L.DomUtil.create("div", "scalebar");
        this._div.id = "scalebar";
        this._bar = L.DomUtil.create("div", "", this._div);
        this._label = L.DomUtil.create("span", "", this._div);
        map.on("zoomend", () => this.update());
        setTimeout(() => this.update(), 0);
        return this._div;
      },
      update() {
        const umPerPx = displayMpp * Math.pow(2, M - map.getZoom());
        const maxUm = umPerPx * 150;
        const p = Math.pow(10, Math.floor(Math.log10(maxUm)));
        const nice = [5, 2, 1].map((k) => k * p).find((v) => v <= maxUm) || p;
        this._bar.style.width = `${Math.round(nice / umPerPx)}px`;
        this._label.textContent = nice >= 1000 ? `${nice / 1000} mm` : `${nice} µm`;
      },
    });
    viewer.scale = new Scale().addTo(map);
  }

  // ------------------------------------------------------------------ layers
  function layerUrl(layer, cmap) {
    return api(`/layers/${encodeURIComponent(layer.id)}.png?cmap=${encodeURIComponent(cmap)}`);
  }

  function legendHtml(layer, cmap, stops) {
    const lg = layer.legend || {};
    if (lg.type === "continuous") {
      const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
      return `<span>${fmt(lg.vmin)}</span><span class="bar" style="background:linear-gradient(to right,${stops.join(",")})"></span><span>${fmt(lg.vmax)}</span>`;
    }
    return (lg.items || []).map((it) => `<span><span class="sw" style="background:${it.color}"></span>${it.label}</span>`).join("");
  }

  function buildLayers(info, map) {
    const select = $("cmap");
    Object.keys(info.colormaps).forEach((name) => {
      const opt = document.createElement("option");
      opt.value = opt.textContent = name;
      select.appendChild(opt);
    });
    const panel = $("layers");
    if (!info.layers.length) panel.textContent = "no stores with results for this slide";
    info.layers.forEach((layer) => addLayerRow(layer, map));
    select.addEventListener("change", () => {
      const cmap = select.value;
      info.layers.forEach((layer) => {
        const entry = viewer.overlays[layer.id];
        if (layer.continuous) {
          entry.legend.innerHTML = legendHtml(layer, cmap, info.colormaps[cmap]);
          if (entry.leaflet) entry.leaflet.setUrl(layerUrl(layer, cmap));
        }
      });
    });
  }

  function addLayerRow(layer, map, preloaded) {
    const info = viewer.info;
    const panel = $("layers");
    const row = document.createElement("div");
    row.className = "layer";
    row.dataset.layer = layer.id;
    row.innerHTML = `<div class="row"><input type="checkbox"><label title="${layer.group}">${layer.name}</label>` +
      `<input type="range" min="0" max="1" step="0.05" value="${layer.type === "vector" ? 1 : 0.5}"></div>` +
      `<div class="legend"></div>`;
    panel.appendChild(row);
    const [check, , range] = row.querySelectorAll("input, label");
    const entry = { layer, leaflet: null, legend: row.querySelector(".legend"), check, range };
    entry.legend.innerHTML = legendHtml(layer, $("cmap").value, info.colormaps[$("cmap").value]);
    viewer.overlays[layer.id] = entry;
    check.addEventListener("change", async () => {
      if (check.checked) {
        try {
          if (!entry.leaflet) entry.leaflet = await makeOverlay(layer, preloaded, parseFloat(range.value));
          entry.leaflet.addTo(map);
        } catch (e) {
          status(`${layer.name}: ${e.message}`, true);
          check.checked = false;
        }
      } else if (entry.leaflet) {
        map.removeLayer(entry.leaflet);
      }
    });
    range.addEventListener("input", () => {
      const v = parseFloat(range.value);
      if (!entry.leaflet) return;
      if (entry.leaflet.setOpacity) entry.leaflet.setOpacity(v);
      else entry.leaflet.setStyle({ opacity: v, fillOpacity: 0.3 * v });
    });
    return entry;
  }

  async function makeOverlay(layer, preloaded, opacity) {
    if (layer.type === "vector") {
      const data = preloaded || (await getJSON(api(`/layers/${encodeURIComponent(layer.id)}.geojson`)));
      return L.geoJSON(data, vectorOptions);
    }
    const b = layer.bounds;
    const bounds = L.latLngBounds([b[1], b[0]], [b[3], b[2]]);
    const image = L.imageOverlay(layerUrl(layer, $("cmap").value), bounds, {
      opacity, className: layer.type === "map" ? "" : "pixelated", interactive: false,
    });
    await new Promise((resolve, reject) => {
      image.once("load", resolve);
      image.once("error", () => getJSON(layerUrl(layer, $("cmap").value)).then(
        () => reject(new Error("the layer could not be drawn")), reject));
      image.addTo(viewer.map);
    });
    return image;
  }

  async function showValues(latlng) {
    const visible = Object.values(viewer.overlays).filter(
      (e) => e.check.checked && ["tiles", "categorical"].includes(e.layer.type) && !e.layer.group.startsWith("tissue/"));
    if (!visible.length) return;
    const x = latlng.lng, y = latlng.lat;
    const out = [];
    for (const e of visible) {
      try {
        const v = await getJSON(api(`/layers/${encodeURIComponent(e.layer.id)}/value?x=${x}&y=${y}`));
        out.push(`${v.group} tile #${v.index} at (${v.x}, ${v.y})\n${JSON.stringify(v.values, null, 1)}`);
      } catch (err) {
        out.push(`${e.layer.name}: ${err.message}`);
      }
    }
    $("values").textContent = out.join("\n\n");
  }

  // ------------------------------------------------------------------ annotation
  const drawing = { tool: null, points: [], temp: null, start: null };

  function newFeature(geometry) {
    const id = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now() + Math.random());
    return {
      type: "Feature", id, geometry,
      properties: { objectType: "annotation", classification: { name: $("cls").value || "Annotation", color: hexToRgb($("clscolor").value) } },
    };
  }
  const xy = (ll) => [Math.round(ll.lng * 100) / 100, Math.round(ll.lat * 100) / 100];

  function setUpAnnotation(info, map) {
    viewer.annotationLayer = L.geoJSON(null, vectorOptions).addTo(map);
    const tools = document.querySelectorAll("button[data-tool]");
    tools.forEach((b) => b.addEventListener("click", () => {
      const tool = drawing.tool === b.dataset.tool ? null : b.dataset.tool;
      cancelDrawing();
      drawing.tool = tool;
      tools.forEach((o) => o.classList.toggle("active", o.dataset.tool === tool));
      map.getContainer().classList.toggle("drawing", !!tool);
      if (tool) { map.doubleClickZoom.disable(); } else { map.doubleClickZoom.enable(); map.dragging.enable(); }
      if (tool === "rectangle") map.dragging.disable(); else map.dragging.enable();
    }));
    map.on("click", (e) => {
      if (drawing.tool === "point") { addAnnotation(newFeature({ type: "Point", coordinates: xy(e.latlng) })); }
      else if (drawing.tool === "polygon") {
        const pts = drawing.points;
        if (pts.length >= 3) {
          const first = map.latLngToContainerPoint(pts[0]);
          if (first.distanceTo(e.containerPoint) < 8) { finishPolygon(); return; }
        }
        pts.push(e.latlng);
        if (drawing.temp) map.removeLayer(drawing.temp);
        drawing.temp = L.polyline(pts, { color: $("clscolor").value, dashArray: "4" }).addTo(map);
      }
    });
    map.on("dblclick", () => { if (drawing.tool === "polygon") finishPolygon(); });
    map.on("mousedown", (e) => {
      if (drawing.tool !== "rectangle") return;
      drawing.start = e.latlng;
    });
    map.on("mousemove", (e) => {
      if (drawing.tool !== "rectangle" || !drawing.start) return;
      if (drawing.temp) map.removeLayer(drawing.temp);
      drawing.temp = L.rectangle(L.latLngBounds(drawing.start, e.latlng), { color: $("clscolor").value, dashArray: "4" }).addTo(map);
    });
    map.on("mouseup", (e) => {
      if (drawing.tool !== "rectangle" || !drawing.start) return;
      const a = xy(drawing.start), b = xy(e.latlng);
      drawing.start = null;
      if (drawing.temp) { map.removeLayer(drawing.temp); drawing.temp = null; }
      if (a[0] === b[0] || a[1] === b[1]) return;
      const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
      const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
      addAnnotation(newFeature({ type: "Polygon", coordinates: [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]] }));
    });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") cancelDrawing(); });
    $("save").addEventListener("click", save);
    $("undo").addEventListener("click", () => {
      viewer.annotations.pop();
      redrawAnnotations();
    });
    $("import").addEventListener("change", importFile);
    // files already in the output folder: the editable set, and earlier imports as layers
    (info.annotation_files || []).forEach(async (name) => {
      try {
        const data = await getJSON(api(`/annotations/${encodeURIComponent(name)}`));
        if (name === "annotations.geojson") {
          viewer.annotations = data.features;
          redrawAnnotations();
        } else {
          addImported(name, data);
        }
      } catch (e) { status(`${name}: ${e.message}`, true); }
    });
  }

  function finishPolygon() {
    const pts = drawing.points.filter((p, i, a) => i === 0 || !p.equals(a[i - 1]));
    drawing.points = [];
    if (drawing.temp) { viewer.map.removeLayer(drawing.temp); drawing.temp = null; }
    if (pts.length < 3) return;
    const ring = pts.map(xy);
    ring.push(ring[0]);
    addAnnotation(newFeature({ type: "Polygon", coordinates: [ring] }));
  }

  function cancelDrawing() {
    drawing.points = [];
    drawing.start = null;
    if (drawing.temp) { viewer.map.removeLayer(drawing.temp); drawing.temp = null; }
  }

  function addAnnotation(feature) {
    viewer.annotations.push(feature);
    redrawAnnotations();
    status(`${viewer.annotations.length} annotation(s), not saved yet`);
  }

  function redrawAnnotations() {
    viewer.annotationLayer.clearLayers();
    viewer.annotationLayer.addData({ type: "FeatureCollection", features: viewer.annotations });
  }

  async function save() {
    try {
      const body = JSON.stringify({ type: "FeatureCollection", features: viewer.annotations });
      const r = await getJSON(api("/annotations/annotations.geojson"), {
        method: "PUT", headers: { "Content-Type": "application/geo+json" }, body,
      });
      status(`saved ${r.n_features} feature(s) to ${r.saved}`);
      viewer.saved = r;
    } catch (e) { status(`not saved: ${e.message}`, true); }
  }

  async function importFile(event) {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const text = await file.text();
      const r = await getJSON(api(`/import?name=${encodeURIComponent(file.name)}`), { method: "POST", body: text });
      addImported(r.name, { type: "FeatureCollection", features: r.features }, true);
      status(`imported ${r.n_features} feature(s) from ${file.name} (saved as ${r.saved})`);
    } catch (e) { status(`import failed: ${e.message}`, true); }
    event.target.value = "";
  }

  function addImported(name, data, show) {
    const layer = { id: `annotations~${name}`, name: `annotations: ${name}`, type: "vector", group: "annotations", legend: classLegend(data) };
    const existing = viewer.overlays[layer.id];
    if (existing) {
      if (existing.leaflet) viewer.map.removeLayer(existing.leaflet);
      existing.check.closest(".layer").remove();
    }
    const entry = addLayerRow(layer, viewer.map, data);
    if (show) { entry.check.checked = true; entry.check.dispatchEvent(new Event("change")); }
  }

  function classLegend(data) {
    const seen = new Map();
    data.features.forEach((f) => {
      const cls = f.properties && f.properties.classification;
      const name = (cls && cls.name) || "(no class)";
      if (!seen.has(name)) seen.set(name, featureColor(f));
    });
    return { type: "categorical", items: [...seen].map(([label, color]) => ({ label, color })) };
  }

  start();
})();
