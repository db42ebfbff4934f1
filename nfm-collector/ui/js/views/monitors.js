// Monitors: the list with each monitor's current HealthIndicator, and the create/edit form whose
// local and remote resources are picked from the collector's topology. Delete asks first.

import { h, notice, splitComponent, fmtBytes, fmtCount, fmtRtt } from '../util.js';
import { api } from '../api.js';
import { healthBadge } from './common.js';

export async function render(ctx) {
  return ctx.route.mode === 'form' ? renderForm(ctx) : renderList(ctx);
}

function resourceList(ids, everywhere) {
  if (everywhere) return h('span', { class: 'res everywhere' }, 'Everywhere');
  return h('span', { class: 'res-list' }, ids.map((id) => {
    const { kind, name } = splitComponent(id);
    return h('span', { class: `chip chip-${kind}`, title: id }, h('span', { class: 'chip-kind' }, kind), name);
  }));
}

/** Each monitor's newest interval (HealthIndicator and metrics), one small query per monitor. */
async function latest(ctx, list) {
  const newest = Number(ctx.status && ctx.status.newest_interval_ms);
  if (!(newest > 0)) return new Map();
  const got = await Promise.all(list.map((m) => api.overview(m.name, { from: newest, to: newest + 1 }).then((o) => o.points[o.points.length - 1] || null).catch(() => null)));
  return new Map(list.map((m, i) => [m.name, got[i]]));
}

async function renderList(ctx) {
  const list = await api.monitors();
  const now = await latest(ctx, list);
  ctx.markSimulated([...now.values()].some((p) => p && p.simulated));
  ctx.setTitle('Monitors');
  const create = h('button', { type: 'button', class: 'btn btn-primary', id: 'create-monitor', onclick: () => ctx.navigate(['monitors', 'new']) }, 'Create monitor');
  const flash = ctx.params.get('saved') ? h('div', { class: 'flash', role: 'status' }, `Monitor “${ctx.params.get('saved')}” saved.`)
    : ctx.params.get('deleted') ? h('div', { class: 'flash', role: 'status' }, `Monitor “${ctx.params.get('deleted')}” deleted.`) : null;
  if (!list.length) {
    return h('div', {}, h('div', { class: 'toolbar' }, create), flash,
      notice('empty', 'No monitors yet.',
        h('p', {}, 'A monitor watches the flows between local resources (subnets, VPCs, AZs) and remote ones (everywhere, or chosen subnets, VPCs, AZs, services) and reports their HealthIndicator.'),
        h('p', {}, 'Create one here, or from a row of ', h('a', { href: '#/insights' }, 'Workload insights'), '.')));
  }
  const rows = list.map((m) => {
    const actions = h('td', { class: 'actions' });
    const normal = () => [
      h('a', { class: 'btn btn-small', href: `#/monitors/${encodeURIComponent(m.name)}` }, 'Overview'),
      h('button', { type: 'button', class: 'btn btn-small', onclick: () => ctx.navigate(['monitors', m.name, 'edit']) }, 'Edit'),
      h('button', { type: 'button', class: 'btn btn-small btn-danger-outline delete', onclick: confirm }, 'Delete'),
    ];
    function confirm() {
      actions.replaceChildren(h('span', { class: 'confirm', 'data-hold': '1' }, `Delete “${m.name}”? `,
        h('button', {
          type: 'button', class: 'btn btn-small btn-danger confirm-delete', onclick: async (e) => {
            e.target.disabled = true;
            try {
              await api.deleteMonitor(m.name);
              ctx.setParams({ deleted: m.name, saved: null });
            } catch (err) {
              actions.replaceChildren(h('span', { class: 'field-error' }, `Could not delete: ${err.message}`), ...normal());
            }
          },
        }, 'Delete'),
        h('button', { type: 'button', class: 'btn btn-small', onclick: () => actions.replaceChildren(...normal()) }, 'Cancel')));
    }
    actions.append(...normal());
    const pt = now.get(m.name);
    const c = pt ? pt.counters : null;
    return h('tr', { class: 'monitor-row', dataset: { name: m.name } },
      h('td', {}, h('a', { class: 'monitor-name', href: `#/monitors/${encodeURIComponent(m.name)}` }, m.name)),
      h('td', {}, resourceList(m.local, false)),
      h('td', {}, resourceList(m.remote, m.everywhere)),
      h('td', { class: 'health' }, pt ? healthBadge(pt.health_indicator) : h('span', { class: 'muted', title: 'No flow of this monitor in the newest interval' }, 'no data')),
      h('td', { class: 'num' }, c ? fmtBytes(c.bytes) : '–'),
      h('td', { class: 'num' }, c ? fmtCount(c.retransmissions) : '–'),
      h('td', { class: 'num' }, c ? fmtRtt(c.rtt_us) : '–'),
      actions);
  });
  return h('div', {},
    h('div', { class: 'toolbar' }, create, h('span', { class: 'muted' }, `${list.length} monitor${list.length === 1 ? '' : 's'}; health and metrics of the latest interval.`)),
    flash,
    h('div', { class: 'card' }, h('table', { class: 'table', id: 'monitors-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Local resources'), h('th', {}, 'Remote resources'), h('th', {}, 'HealthIndicator'),
        h('th', { class: 'num' }, 'Data'), h('th', { class: 'num' }, 'Retrans.'), h('th', { class: 'num' }, 'RTT'), h('th', {}, ''))),
      h('tbody', {}, rows))));
}

const NAME_RE = /^[A-Za-z0-9._-]{1,128}$/;

/** Client-side checks; the collector checks again and its message wins. */
export function validate(spec) {
  const errors = {};
  if (!spec.name) errors.name = 'Give the monitor a name.';
  else if (!NAME_RE.test(spec.name)) errors.name = 'Use 1 to 128 of A–Z a–z 0–9 - _ . (no spaces).';
  if (!spec.local.length) errors.local = 'Pick at least one local resource (subnet, VPC or AZ).';
  if (!spec.everywhere && !spec.remote.length) errors.remote = 'Pick at least one remote resource, or choose Everywhere.';
  return errors;
}

function pickerGroup(title, kind, items, chosen, fieldName) {
  if (!items.length) return null;
  return h('fieldset', { class: 'pick-group' }, h('legend', {}, title),
    items.map((it) => {
      const id = `${kind}:${it.id}`;
      return h('label', { class: 'pick', title: it.hint || id },
        h('input', { type: 'checkbox', name: fieldName, value: id, checked: chosen.has(id) }),
        h('span', {}, it.id), it.hint ? h('span', { class: 'muted pick-hint' }, it.hint) : null);
    }));
}

async function renderForm(ctx) {
  const editing = ctx.route.name || null;
  const [resources, existing] = await Promise.all([
    api.resources().catch((e) => ({ error: e })),
    editing ? api.monitor(editing) : Promise.resolve(null),
  ]);
  ctx.setTitle(editing ? `Edit monitor ${editing}` : 'Create monitor');
  const pre = (k) => (ctx.params.get(k) || '').split(',').filter(Boolean);
  const localChosen = new Set(existing ? existing.local : pre('local'));
  const remoteChosen = new Set(existing ? existing.remote : pre('remote'));
  const everywhere = existing ? existing.everywhere : remoteChosen.size === 0;

  const err = { name: h('div', { class: 'field-error', id: 'err-name' }), local: h('div', { class: 'field-error', id: 'err-local' }), remote: h('div', { class: 'field-error', id: 'err-remote' }), form: h('div', { class: 'field-error', id: 'err-form' }) };

  let localPicker;
  let remotePicker;
  let manual = false;
  if (resources.error) {
    // No topology listing: fall back to typing `kind:name` ids.
    manual = true;
    localPicker = h('input', { type: 'text', name: 'local-text', class: 'wide', placeholder: 'subnet:subnet-app-a, vpc:vpc-app', value: [...localChosen].join(', ') });
    remotePicker = h('input', { type: 'text', name: 'remote-text', class: 'wide', placeholder: 'subnet:subnet-data-a, service:object-store', value: [...remoteChosen].join(', ') });
  } else {
    const r = resources;
    // Pre-filled ids the topology does not list still show, so nothing is silently dropped.
    const known = new Set([...r.subnets.map((x) => `subnet:${x.id}`), ...r.vpcs.map((x) => `vpc:${x.id}`), ...r.azs.map((x) => `az:${x.id}`), ...r.services.map((x) => `service:${x.id}`)]);
    const unknown = (set) => [...set].filter((id) => !known.has(id));
    const extra = (set, kinds) => unknown(set).filter((id) => kinds.includes(splitComponent(id).kind)).map((id) => ({ kind: splitComponent(id).kind, id: splitComponent(id).name, hint: 'not in topology' }));
    const lx = extra(localChosen, ['subnet', 'vpc', 'az']);
    const rx = extra(remoteChosen, ['subnet', 'vpc', 'az', 'service']);
    const subnets = r.subnets.map((x) => ({ id: x.id, hint: [x.cidr, x.az].filter(Boolean).join(' · ') }));
    const vpcs = r.vpcs.map((x) => ({ id: x.id, hint: x.region || '' }));
    const azs = r.azs.map((x) => ({ id: x.id, hint: x.region || '' }));
    const services = r.services.map((x) => ({ id: x.id, hint: x.kind || '' }));
    const withExtra = (items, kind, ex) => items.concat(ex.filter((e) => e.kind === kind));
    localPicker = h('div', { class: 'pickers', id: 'local-pickers' },
      pickerGroup('Subnets', 'subnet', withExtra(subnets, 'subnet', lx), localChosen, 'local'),
      pickerGroup('VPCs', 'vpc', withExtra(vpcs, 'vpc', lx), localChosen, 'local'),
      pickerGroup('Availability zones', 'az', withExtra(azs, 'az', lx), localChosen, 'local'));
    remotePicker = h('div', { class: 'pickers', id: 'remote-pickers' },
      pickerGroup('Subnets', 'subnet', withExtra(subnets, 'subnet', rx), remoteChosen, 'remote'),
      pickerGroup('VPCs', 'vpc', withExtra(vpcs, 'vpc', rx), remoteChosen, 'remote'),
      pickerGroup('Availability zones', 'az', withExtra(azs, 'az', rx), remoteChosen, 'remote'),
      pickerGroup('Services', 'service', withExtra(services, 'service', rx), remoteChosen, 'remote'));
  }
  // Everywhere hides the remote pickers; their ticks are kept for when "Chosen" comes back.
  const remoteWrap = h('div', { class: `remote-choose${everywhere ? ' hidden' : ''}` }, remotePicker);
  const modeRadio = (value, label, checked) => h('label', { class: 'radio' },
    h('input', {
      type: 'radio', name: 'remote-mode', value, checked, onchange: () => {
        remoteWrap.classList.toggle('hidden', value === 'everywhere');
        err.remote.textContent = '';
      },
    }), label);

  const form = h('form', { class: 'card form', id: 'monitor-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'monitor-name' }, 'Name'),
      h('input', { type: 'text', id: 'monitor-name', name: 'name', value: existing ? existing.name : (ctx.params.get('name') || ''), placeholder: 'e.g. app-to-data', autocomplete: 'off', disabled: !!editing }),
      err.name),
    h('div', { class: 'field' },
      h('div', { class: 'label' }, 'Local resources', h('span', { class: 'muted' }, ' — where the monitored hosts are')),
      localPicker, err.local),
    h('div', { class: 'field' },
      h('div', { class: 'label' }, 'Remote resources', h('span', { class: 'muted' }, ' — whom they talk to')),
      h('div', { class: 'radios' }, modeRadio('everywhere', 'Everywhere', everywhere), modeRadio('chosen', 'Chosen resources', !everywhere)),
      remoteWrap, err.remote),
    manual ? notice('info', 'The collector did not list its topology, so type resource ids as kind:name, separated by commas.') : null,
    err.form,
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', class: 'btn btn-primary', id: 'save-monitor' }, editing ? 'Save changes' : 'Create monitor'),
      h('a', { class: 'btn', href: '#/monitors' }, 'Cancel')));

  form.addEventListener('input', (e) => {
    const k = e.target.name === 'name' ? 'name' : /^local/.test(e.target.name) ? 'local' : /^remote/.test(e.target.name) ? 'remote' : null;
    if (k) { err[k].textContent = ''; if (k === 'name') e.target.classList.remove('invalid'); }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const el of Object.values(err)) el.textContent = '';
    form.querySelectorAll('.invalid').forEach((x) => x.classList.remove('invalid'));
    const fd = new FormData(form);
    const split = (v) => String(v || '').split(',').map((x) => x.trim()).filter(Boolean);
    const mode = fd.get('remote-mode');
    const spec = {
      name: editing || String(fd.get('name') || '').trim(),
      local: manual ? split(fd.get('local-text')) : fd.getAll('local').map(String),
      // The collector's Monitor: an empty `remote` means Everywhere.
      remote: mode === 'everywhere' ? [] : (manual ? split(fd.get('remote-text')) : fd.getAll('remote').map(String)),
    };
    const errors = validate({ ...spec, everywhere: mode === 'everywhere' });
    if (Object.keys(errors).length) { show(errors); return; }
    const btn = form.querySelector('#save-monitor');
    btn.disabled = true;
    try {
      if (editing) await api.updateMonitor(editing, spec); else await api.createMonitor(spec);
      ctx.navigate(['monitors'], { saved: spec.name });
    } catch (ex) {
      btn.disabled = false;
      show({ [fieldOf(ex)]: ex.unreachable ? `${ex.message}. Is the collector running?` : ex.message });
    }
  });

  function show(errors) {
    for (const [k, msg] of Object.entries(errors)) {
      (err[k] || err.form).textContent = msg;
      const input = k === 'name' ? form.querySelector('#monitor-name') : null;
      input?.classList.add('invalid');
    }
    const first = Object.keys(errors)[0];
    (err[first] || err.form).scrollIntoView?.({ block: 'nearest' });
  }
  return h('div', {}, form);
}

/** Which form field a refusal from the collector is about. */
function fieldOf(ex) {
  if (ex.field && ['name', 'local', 'remote'].includes(ex.field)) return ex.field;
  const m = String(ex.message).toLowerCase();
  if (ex.status === 409 || /\bname\b|exists/.test(m)) return 'name';
  if (/\blocal\b/.test(m)) return 'local';
  if (/\bremote\b/.test(m)) return 'remote';
  return 'form';
}
