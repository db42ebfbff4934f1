// The collector's JSON API (docs/api.md), and the one place where its answers are turned into
// the shapes the views draw. If the API changes, this file changes; the views do not.

/** A failed request: `unreachable` when no HTTP answer came back at all. */
export class ApiError extends Error {
  constructor(message, { status = 0, unreachable = false, path = '' } = {}) {
    super(message);
    this.status = status;
    this.unreachable = unreachable;
    this.path = path;
  }
}

const TIMEOUT_MS = 10000;

// At most this many requests in flight: plenty for a dashboard, and gentle on a collector that
// serves each request on its own connection (one request per connection, `Connection: close`).
const MAX_IN_FLIGHT = 2;
let inFlight = 0;
const waiting = [];

async function request(method, path, body) {
  if (inFlight >= MAX_IN_FLIGHT) await new Promise((resolve) => waiting.push(resolve));
  inFlight += 1;
  try {
    return await send(method, path, body);
  } finally {
    inFlight -= 1;
    const next = waiting.shift();
    if (next) next();
  }
}

async function send(method, path, body) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: ctl.signal,
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(`the collector did not answer ${method} ${path} (${e.name === 'AbortError' ? 'timed out' : e.message})`,
      { unreachable: true, path });
  } finally {
    clearTimeout(timer);
  }
  const text = await res.text();
  let json = null;
  if (text) {
    // Agent ids are 64-bit: beyond 2^53 a JS number would silently change them, so they are
    // read as strings.
    const safe = text.replace(/"agent_id":\s*(\d+)/g, '"agent_id":"$1"');
    try { json = JSON.parse(safe); } catch { json = null; }
  }
  // Signed out or the session expired (issue 15): back to the login page. The session is an
  // HttpOnly cookie the browser sends by itself; this code never sees a token.
  if (res.status === 401 && typeof location !== 'undefined') location.assign('/login');
  if (!res.ok) {
    const msg = (json && (json.error || json.message)) || text || res.statusText;
    const err = new ApiError(String(msg), { status: res.status, path });
    err.field = json && json.field;
    err.body = json;
    throw err;
  }
  return json;
}

const qs = (params) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? `?${s}` : '';
};

const enc = encodeURIComponent;
const arr = (x) => (Array.isArray(x) ? x : []);
const num = (x) => (typeof x === 'number' && isFinite(x) ? x : 0);

/** Counters as the API sends them (api.rs `counters_json`) → {bytes, retransmissions, timeouts, rtt_us, records}. */
export function counters(c) {
  c = c || {};
  let rtt = c.round_trip_time_us ?? c.rtt_us;
  if (rtt === undefined && c.rtt_count) rtt = c.rtt_sum_us / c.rtt_count;
  return {
    bytes: num(c.data_transferred ?? c.bytes),
    retransmissions: num(c.retransmissions),
    timeouts: num(c.timeouts),
    rtt_us: rtt === null || rtt === undefined ? null : num(rtt),
    rtt_samples: num(c.rtt_samples ?? c.rtt_count),
    records: num(c.records),
  };
}

export function metricValue(c, metricId) {
  switch (metricId) {
    case 'data-transferred': return c.bytes;
    case 'retransmissions': return c.retransmissions;
    case 'timeouts': return c.timeouts;
    case 'round-trip-time': return c.rtt_us ?? 0;
    default: return 0;
  }
}

function flow(f) {
  return {
    agent_id: f.agent_id,
    local: f.local,
    remote: f.remote,
    port: f.port,
    server: !!f.server,
    category: f.category || 'unclassified',
    counters: counters(f.counters),
    value: f.value,
    path: arr(f.path).map(String),
    intervals: num(f.intervals),
    degraded_intervals: num(f.degraded_intervals),
    degraded: num(f.degraded_intervals) > 0 || f.degraded === true,
  };
}

function verdict(v) {
  return {
    interval_start_ms: num(v.interval_start_ms),
    component: String(v.component),
    blame: v.blame || 'network',
    confidence: num(v.confidence),
    degraded_flows: num(v.degraded_flows),
    healthy_flows: num(v.healthy_flows),
    evidence: arr(v.evidence).map((e) => ({ metric: String(e.metric), baseline: num(e.baseline), observed: num(e.observed) })),
    first_seen_ms: num(v.first_seen_ms),
  };
}

/** monitor.rs `Monitor`: an empty `remote` means Everywhere. */
function monitor(m) {
  const remote = arr(m.remote).map(String);
  return { name: String(m.name), local: arr(m.local).map(String), remote, everywhere: remote.length === 0 };
}

function overviewPoint(p) {
  return {
    start_ms: num(p.start_ms), end_ms: num(p.end_ms),
    counters: counters(p),
    health_indicator: p.health_indicator ?? null,
    flows: num(p.flows),
    simulated: !!p.simulated,
  };
}

const SMALL_FLEET = 500;
let fleetCache = null;

export const api = {
  /** {newest_interval_ms, intervals, agents, monitors, started_ms, version}. */
  status() {
    return request('GET', '/api/status');
  },
  /** {auth, role}: whether sign-in is on, and this session's role (admin or viewer). */
  session() {
    return request('GET', '/api/session');
  },
  async insights({ metric, category, from, to, limit }) {
    const r = await request('GET', `/api/insights${qs({ metric, category, from, to, limit })}`);
    const totals = Object.entries(r.totals || {}).map(([cat, c]) => ({ category: cat, counters: counters(c) }));
    return { flows: arr(r.contributors).map(flow), totals, intervals: num(r.intervals), simulated: !!r.simulated };
  },
  async monitors() {
    return arr(await request('GET', '/api/monitors')).map(monitor);
  },
  async monitor(name) {
    return monitor(await request('GET', `/api/monitors/${enc(name)}`));
  },
  createMonitor(spec) {
    return request('POST', '/api/monitors', spec);
  },
  updateMonitor(name, spec) {
    return request('PUT', `/api/monitors/${enc(name)}`, spec);
  },
  deleteMonitor(name) {
    return request('DELETE', `/api/monitors/${enc(name)}`);
  },
  async overview(name, { from, to }) {
    const r = await request('GET', `/api/monitors/${enc(name)}/overview${qs({ from, to })}`);
    const points = arr(r.points).map(overviewPoint);
    return { points, totals: counters(r.totals), simulated: points.some((p) => p.simulated) };
  },
  async history(name, { metric, from, to, bucket, limit }) {
    const r = await request('GET', `/api/monitors/${enc(name)}/history${qs({ metric, from, to, bucket, limit })}`);
    return {
      bucket_ms: num(r.bucket_ms),
      buckets: arr(r.buckets).map((b) => ({
        start_ms: num(b.start_ms),
        pairs: arr(b.pairs).map((p) => ({ local: String(p.local), remote: String(p.remote), counters: counters(p.counters), value: p.value })),
      })),
    };
  },
  async topology(name, { from, to }) {
    const r = await request('GET', `/api/monitors/${enc(name)}/topology${qs({ from, to })}`);
    return { flows: arr(r.flows).map(flow), verdicts: arr(r.verdicts).map(verdict), components: arr(r.components) };
  },
  /** Incidents: verdicts grouped per component through its flaps (`/api/incidents`). */
  async incidents({ from, to }) {
    const r = await request('GET', `/api/incidents${qs({ from, to })}`);
    return arr(r.incidents).map((i) => ({
      component: String(i.component),
      blame: String(i.blame),
      state: String(i.state),
      first_seen_ms: num(i.first_seen_ms),
      last_named_ms: num(i.last_named_ms),
      intervals_named: num(i.intervals_named),
      flaps: num(i.flaps),
      max_confidence: Number(i.max_confidence) || 0,
    }));
  },
  async verdicts({ from, to }) {
    const r = await request('GET', `/api/verdicts${qs({ from, to })}`);
    return arr(r.verdicts).map(verdict);
  },
  async agents() {
    const r = await request('GET', '/api/agents');
    return arr(r.agents).map((a) => {
      const st = a.stats || null;
      return {
        agent_id: a.agent_id,
        hostname: a.host_name || '',
        version: a.agent_version || '',
        transport: a.transport || '',
        last_seen_ms: a.last_seen_ms || null,
        epoch: a.epoch,
        interval_ms: num(a.interval_ms),
        frames: num(a.frames),
        records: num(a.records),
        lost: num(a.lost),
        duplicates: num(a.duplicates),
        rejected: a.rejected || {},
        simulated: !!a.simulated,
        goodbye: a.goodbye || null,
        // Lifetime average: CPU time over uptime (the agent reports cumulative figures).
        // An agent that reports neither CPU time nor memory (nfm-sim's virtual agents) reported
        // nothing, not zero.
        cpu: st && st.uptime_ms > 0 && (st.cpu_time_us > 0 || st.rss_bytes > 0) ? (100 * num(st.cpu_time_us)) / (1000 * st.uptime_ms) : null,
        rss: st && st.rss_bytes > 0 ? num(st.rss_bytes) : null,
        flows_tracked: st ? num(st.flows_tracked) : null,
        agent_drops: st ? num(st.events_lost) + num(st.map_full) + num(st.spool_dropped_frames) : null,
      };
    });
  },
  /**
   * Whether the fleet includes simulated agents. `/api/agents` is big for a large fleet (about
   * 550 bytes an agent), so above SMALL_FLEET agents the answer is reused for a minute.
   */
  async fleetSimulated(status) {
    const n = Number(status && status.agents) || 0;
    if (n === 0) return false;
    if (n > SMALL_FLEET && fleetCache && Date.now() - fleetCache.at < 60000) return fleetCache.simulated;
    const list = await api.agents();
    fleetCache = { at: Date.now(), simulated: list.some((a) => a.simulated) };
    return fleetCache.simulated;
  },
  /** The topology's resources, for the monitor form's pickers. */
  async resources() {
    const r = await request('GET', '/api/topology');
    return {
      subnets: arr(r.subnets).map((x) => ({ id: x.id, vpc: x.vpc, az: x.az, cidr: x.cidr })),
      vpcs: arr(r.vpcs).map((x) => ({ id: x.id, region: x.region })),
      azs: arr(r.azs).map((x) => ({ id: x.name, region: x.region })),
      services: arr(r.services).map((x) => ({ id: x.name, kind: x.kind })),
    };
  },
};
