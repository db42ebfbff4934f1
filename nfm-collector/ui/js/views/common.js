// Pieces several views share: path chips, resource names of a flow, the monitor picker.

import { h, splitComponent, badge } from '../util.js';
import { api } from '../api.js';
import { stagesOf } from '../topology.js';

/** A path drawn as a row of chips, component by component, blamed ones highlighted. */
export function pathChips(path, blamed = new Map()) {
  return h('span', { class: 'path' }, path.map((id, i) => {
    const { kind, name } = splitComponent(id);
    const b = blamed.get(id);
    return [i ? h('span', { class: 'arrow', 'aria-hidden': 'true' }, '→') : null,
      h('span', { class: `chip chip-${kind}${b ? (b === 'network' ? ' chip-blamed' : ' chip-blamed-endpoint') : ''}`, title: id, dataset: { component: id } },
        h('span', { class: 'chip-kind' }, kind), name)];
  }));
}

/** The monitor-style local and remote resources of a flow, from its path. */
export function flowResources(f) {
  const st = stagesOf(f.path);
  const at = (stage) => f.path[st.indexOf(stage)];
  const local = f.local_resource || at(1) || at(4) || at(2) || at(0) || null;
  const remoteEnd = at(9);
  let remote = f.remote_resource || null;
  if (!remote) {
    if (remoteEnd && /^service:/.test(remoteEnd)) remote = remoteEnd;
    else remote = at(8) || at(6) || (remoteEnd && !/^(external|host):/.test(remoteEnd) ? remoteEnd : null);
  }
  return { local, remote, remoteEnd };
}

export function endpointLabel(ip, port, resource) {
  const { name } = splitComponent(resource || '');
  return h('div', { class: 'endpoint' },
    h('div', { class: 'ep-addr' }, port ? `${ip}:${port}` : String(ip ?? '')),
    resource ? h('div', { class: 'ep-res muted' }, name) : null);
}

export function healthBadge(hi) {
  if (hi === 1) return badge('Degraded (1)', 'badge-bad');
  if (hi === 0) return badge('Healthy (0)', 'badge-good');
  return badge('Not evaluated', 'badge-none');
}

export function simulatedBadge() {
  return badge('simulated', 'badge-sim');
}

/** A <select> of monitor names; `onchange(name)`. */
export function monitorPicker(list, selected, onchange) {
  return h('label', { class: 'field-inline' }, 'Monitor ',
    h('select', { id: 'monitor-picker', onchange: (e) => onchange(e.target.value) },
      list.map((m) => h('option', { value: m.name, selected: m.name === selected }, m.name))));
}

/** Whether the newest interval of monitor `name` came from simulated agents (one small query). */
export async function newestIsSimulated(ctx, name) {
  const newest = Number(ctx.status && ctx.status.newest_interval_ms);
  if (!(newest > 0)) return false;
  const o = await api.overview(name, { from: newest, to: newest + 1 }).catch(() => null);
  return !!(o && o.simulated);
}

/** Makes a clickable table row reachable and usable from the keyboard. */
export function rowKeys(tr) {
  tr.tabIndex = 0;
  tr.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); tr.click(); } });
  return tr;
}
