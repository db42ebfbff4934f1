// Agents: each agent the collector has heard from, when, how many frames it lost or had
// rejected (by reason), and what the agent itself costs (CPU, memory).

import { h, notice, fmtAgo, fmtTime, fmtCount, fmtBytes } from '../util.js';
import { api } from '../api.js';
import { simulatedBadge } from './common.js';

export async function render(ctx) {
  const list = await api.agents();
  const sim = list.filter((a) => a.simulated).length;
  ctx.markSimulated(sim > 0);
  if (!list.length) {
    return notice('empty', 'No agents have connected yet.',
      h('p', {}, 'Run nfm-agent on each host with the collector\'s ingest address (or nfm-sim run for a simulated fleet). An agent appears here after its first Hello.'));
  }
  const now = Date.now();
  const stale = (a) => a.last_seen_ms && now - a.last_seen_ms > 60000;
  const sorted = [...list].sort((a, b) => (b.lost + sumRej(b)) - (a.lost + sumRej(a)) || String(a.agent_id).localeCompare(String(b.agent_id)));
  const shown = sorted.slice(0, 200);
  return h('div', {},
    h('div', { class: 'toolbar' }, h('span', {}, `${list.length} agent${list.length === 1 ? '' : 's'}`,
      sim ? [' (', h('strong', {}, `${sim} simulated`), ')'] : '',
      `; ${list.filter(stale).length} silent for over a minute.`),
    list.length > shown.length ? h('span', { class: 'muted' }, `Showing the ${shown.length} with the most lost or rejected frames.`) : null),
    h('div', { class: 'card' }, h('table', { class: 'table', id: 'agents-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Agent'), h('th', {}, 'Host'), h('th', {}, 'Last seen'), h('th', { class: 'num' }, 'Epoch'), h('th', { class: 'num' }, 'Frames'),
        h('th', { class: 'num' }, 'Lost'), h('th', {}, 'Rejected'), h('th', { class: 'num' }, 'CPU (avg)'), h('th', { class: 'num' }, 'Memory'))),
      h('tbody', {}, shown.map((a) => h('tr', { class: `agent-row${stale(a) ? ' stale' : ''}`, dataset: { agent: a.agent_id } },
        h('td', { class: 'mono' }, String(a.agent_id), a.simulated ? simulatedBadge() : null),
        h('td', {}, a.hostname || a.addr || '–'),
        h('td', { title: a.last_seen_ms ? `${fmtTime(a.last_seen_ms, true)} UTC` : '' }, fmtAgo(a.last_seen_ms, now)),
        h('td', { class: 'num' }, a.epoch ?? '–'),
        h('td', { class: 'num' }, fmtCount(a.frames)),
        h('td', { class: `num${a.lost ? ' warn' : ''}` }, fmtCount(a.lost)),
        h('td', {}, rejected(a.rejected)),
        h('td', { class: 'num', title: a.cpu === null ? 'not reported by this agent' : 'CPU time over uptime (lifetime average)' }, a.cpu === null ? '–' : `${Number(a.cpu).toFixed(1)}%`),
        h('td', { class: 'num', title: a.rss === null ? 'not reported by this agent' : 'resident set size' }, a.rss === null ? '–' : fmtBytes(a.rss))))))));
}

function sumRej(a) {
  return Object.values(a.rejected || {}).reduce((x, y) => x + (Number(y) || 0), 0);
}

function rejected(r) {
  const e = Object.entries(r || {}).filter(([, n]) => Number(n) > 0);
  if (!e.length) return h('span', { class: 'muted' }, '0');
  return h('span', { class: 'warn' }, e.map(([k, n]) => `${k}: ${fmtCount(n)}`).join(', '));
}
