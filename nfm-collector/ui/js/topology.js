// Draws flows' paths as a left-to-right graph: one column per path stage (local host, subnet, AZ,
// AZ pair, VPC, gateway, remote VPC, region pair, remote subnet, remote end), one box per
// component with its resource id, one edge per consecutive pair of components. A component that a
// verdict blames is filled red (network) or amber (endpoint), so the culprit stands out as the
// shared choke point of the degraded flows.

import { s, splitComponent } from './util.js';

export const STAGES = ['Local host', 'Local subnet', 'Local AZ', 'AZ pair', 'Local VPC', 'Gateway', 'Remote VPC', 'Region pair', 'Remote subnet', 'Remote end'];

/** Stage index of each component of a path (see model.rs FlowSample::path). */
export function stagesOf(path) {
  let subnets = 0;
  let vpcs = 0;
  return path.map((id, i) => {
    const { kind } = splitComponent(id);
    switch (kind) {
      case 'host': return i === 0 ? 0 : 9;
      case 'subnet': return subnets++ === 0 && i < path.length - 1 ? 1 : 8;
      case 'az': return 2;
      case 'az-pair': return 3;
      case 'vpc': return vpcs++ === 0 ? 4 : 6;
      case 'gateway': return 5;
      case 'region-pair': return 7;
      default: return 9; // service, external
    }
  });
}

const MAX_ROWS = 10;
const NODE_H = 34;
const GAP = 10;

/**
 * flows: [{path: [id], degraded: bool}], verdicts: [{component, blame}].
 * Returns {svg, hidden} where hidden counts components folded into "+N more" boxes.
 */
export function topologyGraph(flows, verdicts, { width = 1000 } = {}) {
  const blamed = new Map(verdicts.map((v) => [v.component, v.blame]));
  const sorted = [...flows].sort((a, b) => a.path.join('>').localeCompare(b.path.join('>')));
  // Collect nodes per stage with the mean rank of their flows (ordering reduces crossings).
  const nodes = new Map(); // id → {id, stage, rankSum, n, degraded, healthy}
  const routes = sorted.map((f, rank) => {
    const st = stagesOf(f.path);
    return f.path.map((id, i) => {
      let n = nodes.get(id);
      if (!n) { n = { id, stage: st[i], rankSum: 0, n: 0, degraded: 0, healthy: 0 }; nodes.set(id, n); }
      n.rankSum += rank; n.n += 1;
      if (f.degraded) n.degraded += 1; else n.healthy += 1;
      return id;
    });
  });
  const used = [...new Set([...nodes.values()].map((n) => n.stage))].sort((a, b) => a - b);
  const cols = new Map(used.map((st) => [st, []]));
  for (const n of nodes.values()) cols.get(n.stage).push(n);
  const alias = new Map(); // folded component → its "+N more" node id
  let hidden = 0;
  for (const [st, list] of cols) {
    // Blamed first, then by ordering rank.
    list.sort((a, b) => (blamed.has(b.id) - blamed.has(a.id)) || (a.rankSum / a.n - b.rankSum / b.n));
    if (list.length > MAX_ROWS) {
      const extra = list.splice(MAX_ROWS - 1);
      const more = { id: `more:${st}`, stage: st, more: extra.length, degraded: 0, healthy: 0 };
      for (const e of extra) { alias.set(e.id, more.id); more.degraded += e.degraded; more.healthy += e.healthy; }
      hidden += extra.length;
      list.push(more);
      nodes.set(more.id, more);
    }
    list.sort((a, b) => (a.more ? 1 : 0) - (b.more ? 1 : 0) || (a.rankSum / a.n - b.rankSum / b.n));
  }
  const rows = Math.max(1, ...[...cols.values()].map((l) => l.length));
  const top = 28;
  const height = top + rows * (NODE_H + GAP) + 16;
  const colW = width / used.length;
  const nodeW = Math.min(150, colW - 14);
  const pos = new Map();
  used.forEach((st, ci) => {
    const list = cols.get(st);
    const offset = ((rows - list.length) * (NODE_H + GAP)) / 2;
    list.forEach((n, ri) => pos.set(n.id, { x: ci * colW + (colW - nodeW) / 2, y: top + offset + ri * (NODE_H + GAP) }));
  });

  const svg = s('svg', { class: 'topology', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Paths of the flows, component by component' });
  used.forEach((st, ci) => svg.append(s('text', { class: 'stage', x: ci * colW + colW / 2, y: 14, 'text-anchor': 'middle' }, STAGES[st])));

  // Edges, aggregated.
  const edges = new Map();
  routes.forEach((route, fi) => {
    const f = sorted[fi];
    for (let i = 0; i + 1 < route.length; i++) {
      const a = alias.get(route[i]) || route[i];
      const b = alias.get(route[i + 1]) || route[i + 1];
      if (a === b) continue;
      const key = `${a}\u0000${b}`;
      const e = edges.get(key) || { a, b, degraded: 0, healthy: 0 };
      if (f.degraded) e.degraded += 1; else e.healthy += 1;
      edges.set(key, e);
    }
  });
  const eg = s('g', { class: 'edges' });
  for (const e of edges.values()) {
    const pa = pos.get(e.a);
    const pb = pos.get(e.b);
    if (!pa || !pb) continue;
    const x1 = pa.x + nodeW; const y1 = pa.y + NODE_H / 2;
    const x2 = pb.x; const y2 = pb.y + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    const n = e.degraded + e.healthy;
    // An edge that skips columns (e.g. VPC straight to a subnet of the same VPC) must not look
    // as if it went through the boxes it passes: it bows below the skipped columns' boxes.
    const ca = used.indexOf(nodes.get(e.a).stage);
    const cb = used.indexOf(nodes.get(e.b).stage);
    let d = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
    if (cb - ca > 1) {
      let low = Math.max(y1, y2);
      for (let c = ca + 1; c < cb; c++) for (const m of cols.get(used[c])) low = Math.max(low, pos.get(m.id).y + NODE_H + 8);
      const r = Math.min(30, (x2 - x1) / 4);
      d = `M${x1},${y1} C${x1 + r},${y1} ${x1 + r},${low} ${x1 + 2 * r},${low} L${x2 - 2 * r},${low} C${x2 - r},${low} ${x2 - r},${y2} ${x2},${y2}`;
    }
    eg.append(s('path', {
      class: `edge ${e.degraded ? 'edge-degraded' : 'edge-healthy'}`,
      d,
      'stroke-width': (1.2 + Math.log2(n)).toFixed(1),
    }, s('title', {}, `${e.a} → ${e.b}: ${e.degraded} degraded, ${e.healthy} healthy flow(s)`)));
  }
  svg.append(eg);

  const ng = s('g', { class: 'nodes' });
  for (const n of nodes.values()) {
    const p = pos.get(n.id);
    if (!p) continue;
    const blame = blamed.get(n.id);
    const cls = ['node',
      blame === 'network' ? 'blamed' : blame ? 'blamed-endpoint' : n.degraded ? 'on-degraded' : 'healthy',
      n.more ? 'more' : ''].join(' ');
    const { kind, name } = n.more ? { kind: '', name: `+${n.more} more` } : splitComponent(n.id);
    // Monospace at 11px is ~6.6px a character; long ids are squeezed (down to 70%) before they
    // are cut, so resource ids stay whole wherever they can.
    const room = nodeW - 10;
    const natural = name.length * 6.6;
    const maxChars = Math.floor(room / (6.6 * 0.7));
    const shown = name.length > maxChars ? `${name.slice(0, maxChars - 1)}…` : name;
    const squeeze = natural > room ? { textLength: Math.min(room, shown.length * 6.6).toFixed(0), lengthAdjust: 'spacingAndGlyphs' } : {};
    ng.append(s('g', {
      class: cls, transform: `translate(${p.x},${p.y})`,
      dataset: { component: n.id, blamed: blame ? 'true' : 'false' },
    },
    s('title', {}, `${n.more ? `${n.more} more components` : n.id}\n${n.degraded} degraded, ${n.healthy} healthy flow(s)${blame ? `\nBLAMED (${blame})` : ''}`),
    s('rect', { width: nodeW, height: NODE_H, rx: 5 }),
    s('text', { class: 'kind', x: 6, y: 12 }, blame ? `${kind} · blamed` : kind),
    s('text', { class: 'name', x: 6, y: 27, ...squeeze }, shown)));
  }
  svg.append(ng);
  return { svg, hidden };
}
