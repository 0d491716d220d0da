/*
 * The operations page (/ops): live charts of the service for an operator token.
 *
 * Every POLL_MS it reads GET /api/ops/overview (every replica's heartbeat plus the shared
 * backlogs; the route answers 404 to any token without `role: "ops"`, exactly like a missing
 * route) and appends one point to each chart, keeping the last WINDOW points. Replies per
 * second are the change of the replicas' cumulative counters between two polls (a restarted
 * replica's counters start again from zero: a negative change counts as none). Every
 * STATS_MS it reads GET /api/stats (the operator's own tenant) for the tenant charts.
 *
 * Charts are uPlot (vendored, the global `uPlot`): no CDN, the page works offline. Each chart
 * card carries `data-points` (points drawn) for tests and for a glance in the inspector.
 * The token lives in sessionStorage (this tab only), never in a URL.
 */

const TOKEN_KEY = "triagem.ops-token";
const POLL_MS = 3000;
const STATS_MS = 60_000;
const WINDOW = 120; // 6 minutes at one point per 3 s
const STATS_DAYS = 14;
const MIB = 1024 * 1024;

const $ = (selector) => document.querySelector(selector);

class NotOps extends Error {}

const LIVE = [
  {
    id: "replicas",
    title: "Réplicas ativas",
    series: [{ label: "réplicas", stroke: "#1f4e8c" }],
    point: (o) => [o.replicas.length],
  },
  {
    id: "streams",
    title: "Streams SSE abertos",
    series: [{ label: "streams", stroke: "#6a3d9a" }],
    point: (o) => [o.streams_open],
  },
  {
    id: "replies",
    title: "Respostas por segundo",
    series: [
      { label: "iniciadas", stroke: "#1f4e8c" },
      { label: "concluídas", stroke: "#1e7a46" },
      { label: "falhas", stroke: "#b3261e" },
    ],
    point: (o, prev, dt) =>
      ["replies_started", "replies_completed", "replies_failed"].map((name) =>
        prev && dt > 0 ? round(Math.max(0, o[name] - prev[name]) / dt, 2) : null,
      ),
  },
  {
    id: "p99",
    title: "p99 do POST ao 1º evento (ms)",
    series: [{ label: "p99 (ms)", stroke: "#a15c00" }],
    point: (o) => [o.first_event_p99_seconds == null ? null : round(o.first_event_p99_seconds * 1000, 1)],
  },
  {
    id: "backlog",
    title: "Sessões esperando snapshot",
    series: [
      { label: "sessões", stroke: "#1f4e8c", scale: "n" },
      { label: "idade da mais antiga (s)", stroke: "#b3261e", scale: "s" },
    ],
    axes: [{ scale: "n" }, { scale: "s", side: 1 }],
    point: (o) => [o.dirty_sessions, o.dirty_oldest_age_seconds],
  },
  {
    id: "queue",
    title: "Fila Celery e workers",
    series: [
      { label: "mensagens na fila", stroke: "#1f4e8c", scale: "n" },
      { label: "workers", stroke: "#1e7a46", scale: "w" },
    ],
    axes: [{ scale: "n" }, { scale: "w", side: 1 }],
    point: (o) => [o.queue_depth, o.workers == null ? null : o.workers.length],
  },
  {
    id: "memory",
    title: "Memória do Redis (MiB)",
    series: [
      { label: "usada", stroke: "#1f4e8c", fill: "#1f4e8c22" },
      { label: "maxmemory", stroke: "#b3261e", dash: [6, 4] },
    ],
    point: (o) => [
      o.redis_used_memory_bytes == null ? null : round(o.redis_used_memory_bytes / MIB, 2),
      o.redis_maxmemory_bytes ? round(o.redis_maxmemory_bytes / MIB, 2) : null,
    ],
  },
];

function round(value, digits) {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString("pt-BR", {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

function dayLabel(seconds) {
  return new Date(seconds * 1000).toLocaleDateString("pt-BR", {
    day: "2-digit",
    month: "2-digit",
    timeZone: "UTC",
  });
}

/** One chart card: a uPlot with a time x axis, and the data it draws. */
class Chart {
  constructor(container, { id, title, series, axes, xLabel = clock, bars = false }) {
    this.figure = document.createElement("figure");
    this.figure.className = "card chart";
    this.figure.id = `chart-${id}`;
    this.figure.dataset.points = "0";
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    this.plotEl = document.createElement("div");
    this.plotEl.className = "plot";
    this.figure.append(caption, this.plotEl);
    container.append(this.figure);
    this.data = [[], ...series.map(() => [])];
    const scales = { x: { time: true } };
    // Bars are a day wide: half a day of margin each side, or the first and last are cut.
    if (bars) scales.x.range = (u, min, max) => [min - 43_200, max + 43_200];
    const yAxes = (axes || [{}]).map((axis) => ({
      size: 48,
      stroke: "#5b6675",
      grid: { stroke: "#e6e9ef", show: axis.side !== 1 },
      ...axis,
    }));
    for (const axis of yAxes) {
      if (axis.scale) scales[axis.scale] = { auto: true, range: (u, min, max) => [0, Math.max(1, max * 1.15)] };
    }
    if (!axes) scales.y = { auto: true, range: (u, min, max) => [0, Math.max(1, max * 1.15)] };
    const barPaths = bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined;
    this.plot = new uPlot(
      {
        width: this.width(),
        height: 170,
        scales,
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        series: [
          {},
          ...series.map((s) => ({
            width: 2,
            spanGaps: false,
            points: { show: false },
            ...(bars ? { paths: barPaths, fill: `${s.stroke}cc` } : {}),
            ...s,
          })),
        ],
        axes: [
          {
            stroke: "#5b6675",
            grid: { stroke: "#e6e9ef" },
            values: (u, splits) => splits.map((v) => (v == null ? "" : xLabel(v))),
            space: 70,
          },
          ...yAxes,
        ],
      },
      this.data,
      this.plotEl,
    );
  }

  width() {
    return Math.max(240, this.plotEl.clientWidth || this.figure.clientWidth - 24 || 300);
  }

  push(x, values) {
    this.data[0].push(x);
    values.forEach((v, i) => this.data[i + 1].push(v ?? null));
    if (this.data[0].length > WINDOW) this.data.forEach((column) => column.shift());
    this.redraw();
  }

  replace(xs, columns) {
    this.data = [xs, ...columns];
    this.redraw();
  }

  redraw() {
    this.plot.setData(this.data);
    this.figure.dataset.points = String(this.data[0].length);
  }

  resize() {
    this.plot.setSize({ width: this.width(), height: 170 });
  }
}

function fillBars(figure, counts) {
  const list = figure.querySelector(".bar-list");
  list.replaceChildren();
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const top = Math.max(1, ...entries.map(([, n]) => n));
  for (const [name, n] of entries) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = name;
    const value = document.createElement("span");
    value.textContent = String(n);
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * n) / top}%`;
    item.append(label, value, bar);
    list.append(item);
  }
  if (!entries.length) {
    const empty = document.createElement("li");
    empty.className = "empty";
    empty.textContent = "nenhuma triagem no período";
    list.append(empty);
  }
  figure.dataset.points = String(entries.length);
}

async function getJson(path, token) {
  const response = await fetch(path, {
    headers: { Accept: "application/json", Authorization: `Bearer ${token}` },
  });
  if (response.status === 404 && path.startsWith("/api/ops/")) throw new NotOps();
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      message = (await response.json()).error.message || message;
    } catch {}
    throw new Error(message);
  }
  return response.json();
}

function setTiles(o, rate) {
  const text = (id, value) => ($(`#tile-${id}`).textContent = value);
  text("replicas", String(o.replicas.length));
  text("streams", String(o.streams_open));
  text("rate", rate == null ? "–" : rate.toLocaleString("pt-BR"));
  text("p99", o.first_event_p99_seconds == null ? "–" : `${Math.round(o.first_event_p99_seconds * 1000)} ms`);
  text(
    "dirty",
    o.dirty_sessions == null ? "?" : `${o.dirty_sessions} (${Math.round(o.dirty_oldest_age_seconds || 0)} s)`,
  );
  text("refused", o.refused_sessions == null ? "?" : String(o.refused_sessions));
  text(
    "queue",
    o.queue_depth == null ? "?" : `${o.queue_depth} · ${o.workers == null ? "?" : o.workers.length} workers`,
  );
  const used = o.redis_used_memory_bytes;
  const max = o.redis_maxmemory_bytes;
  text(
    "memory",
    used == null ? "?" : max ? `${Math.round((100 * used) / max)}% de ${round(max / MIB, 0)} MiB` : `${round(used / MIB, 1)} MiB`,
  );
}

function problem(message) {
  const el = $("#problem");
  el.textContent = message || "";
  el.hidden = !message;
}

function start(token) {
  document.body.dataset.state = "live";
  $("#login").hidden = true;
  $("#dashboard").hidden = false;
  $("#sign-out").hidden = false;
  const live = LIVE.map((spec) => ({ spec, chart: new Chart($("#live-charts"), spec) }));
  const tenantCharts = $("#tenant-charts");
  const messages = new Chart(tenantCharts, {
    id: "messages",
    title: `Mensagens por dia (${STATS_DAYS} dias)`,
    series: [{ label: "mensagens", stroke: "#1f4e8c" }],
    xLabel: dayLabel,
    bars: true,
  });
  const sessions = new Chart(tenantCharts, {
    id: "sessions",
    title: `Sessões ativas por dia (${STATS_DAYS} dias)`,
    series: [{ label: "sessões", stroke: "#1e7a46" }],
    xLabel: dayLabel,
    bars: true,
  });
  window.addEventListener("resize", () => {
    for (const { chart } of live) chart.resize();
    messages.resize();
    sessions.resize();
  });

  let prev = null;
  const timers = [];

  async function poll() {
    let o;
    try {
      o = await getJson("/api/ops/overview", token);
    } catch (err) {
      if (err instanceof NotOps) return denied();
      problem(`Sem dados agora (${err.message}); tentando de novo.`);
      return;
    }
    problem(null);
    const dt = prev ? o.generated_at - prev.generated_at : 0;
    for (const { spec, chart } of live) chart.push(o.generated_at, spec.point(o, prev, dt));
    const rate = prev && dt > 0 ? round(Math.max(0, o.replies_completed - prev.replies_completed) / dt, 2) : null;
    setTiles(o, rate);
    $("#updated").textContent = `Atualizado às ${clock(o.generated_at)} · a cada ${POLL_MS / 1000} s`;
    prev = o;
  }

  async function stats() {
    try {
      const s = await getJson(`/api/stats?days=${STATS_DAYS}`, token);
      $("#tenant").textContent = `(${s.tenant})`;
      const xs = s.messages_per_day.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000);
      messages.replace(xs, [s.messages_per_day.map((d) => d.messages)]);
      sessions.replace(xs, [s.messages_per_day.map((d) => d.active_sessions)]);
      fillBars($("#triage-area"), s.triage_by_area);
      fillBars($("#triage-urgency"), s.triage_by_urgency);
    } catch (err) {
      $("#tenant").textContent = `(indisponível: ${err.message})`;
    }
  }

  function denied() {
    timers.forEach(clearInterval);
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.setItem("triagem.ops-denied", "1");
    location.reload();
  }

  poll();
  stats();
  timers.push(setInterval(poll, POLL_MS), setInterval(stats, STATS_MS));
}

function showLogin() {
  document.body.dataset.state = "login";
  if (sessionStorage.getItem("triagem.ops-denied")) {
    sessionStorage.removeItem("triagem.ops-denied");
    document.body.dataset.state = "denied";
    $("#login-error").textContent =
      'Este token não dá acesso à página de operações: é preciso um token com role "ops".';
  }
  $("#token-login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    start(token);
  });
}

$("#sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showLogin();
