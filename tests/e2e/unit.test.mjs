// Unit tests of the dashboard's pure modules (no browser): URL state, time ranges, axis ticks,
// path stages, the resources a flow offers to "Create monitor", monitor form validation and the
// API adapters. Run by scripts/test.d/dashboard.sh before the browser test.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHash, buildHash, resolveRange, anchorOf } from '../../nfm-collector/ui/js/route.js';
import { niceTicks, fmtBytes, fmtRtt, splitComponent, toInputTime, fromInputTime } from '../../nfm-collector/ui/js/util.js';
import { stagesOf, STAGES } from '../../nfm-collector/ui/js/topology.js';
import { counters } from '../../nfm-collector/ui/js/api.js';

const PATH_INTER_VPC = ['host:app-1', 'subnet:subnet-app-a', 'az:use1-az1', 'az-pair:use1-az1|use1-az2', 'vpc:vpc-app', 'gateway:tgw-main', 'vpc:vpc-data', 'subnet:subnet-db-b', 'host:db-4'];

test('hash round trip keeps view, options and range', () => {
  const h = buildHash(['monitors', 'a b/c'], new URLSearchParams({ range: '6h', metric: 'timeouts', empty: '' }));
  assert.equal(h, '#/monitors/a%20b%2Fc?range=6h&metric=timeouts');
  const { parts, params } = parseHash(h);
  assert.deepEqual(parts, ['monitors', 'a b/c']);
  assert.equal(params.get('range'), '6h');
  assert.equal(params.get('empty'), null);
  assert.deepEqual(parseHash('').parts, []);
});

test('ranges: presets end at the anchor, absolute from/to win, bad values fall back', () => {
  const anchor = 1_800_000_000_000;
  assert.deepEqual(
    (({ from, to, preset }) => ({ from, to, preset }))(resolveRange(new URLSearchParams('range=15m'), anchor)),
    { from: anchor - 900_000, to: anchor, preset: '15m' });
  const abs = resolveRange(new URLSearchParams('from=1000&to=5000&range=1h'), anchor);
  assert.equal(abs.absolute, true);
  assert.deepEqual([abs.from, abs.to], [1000, 5000]);
  // from after to, or nonsense: the default preset (1h).
  for (const q of ['from=5000&to=1000', 'range=nope', 'from=x&to=y']) {
    const r = resolveRange(new URLSearchParams(q), anchor);
    assert.deepEqual([r.from, r.to, r.preset], [anchor - 3_600_000, anchor, '1h'], q);
  }
  assert.equal(anchorOf({ newest_interval_ms: 42 }), 43);
  const now = Date.now();
  assert.ok(anchorOf({ newest_interval_ms: null }) >= now);
});

test('axis ticks are nice and cover the maximum', () => {
  assert.deepEqual(niceTicks(0, 9, 4), [0, 2.5, 5, 7.5, 10]);
  assert.deepEqual(niceTicks(0, 1000, 4), [0, 250, 500, 750, 1000]);
  assert.deepEqual(niceTicks(0, 0, 4), [0, 0.25, 0.5, 0.75, 1]);
  const t = niceTicks(0, 1.23e9, 4);
  assert.ok(t[t.length - 1] >= 1.23e9 && t.length <= 6);
});

test('formatting', () => {
  assert.equal(fmtBytes(0), '0 B');
  assert.equal(fmtBytes(1500), '1.5 KB');
  assert.equal(fmtBytes(482_000_000), '482 MB');
  assert.equal(fmtRtt(850), '850 µs');
  assert.equal(fmtRtt(1500), '1.5 ms');
  assert.equal(fmtRtt(null), '–');
  assert.deepEqual(splitComponent('az-pair:use1-az1|use1-az2'), { kind: 'az-pair', name: 'use1-az1|use1-az2' });
  assert.deepEqual(splitComponent('nokind'), { kind: '', name: 'nokind' });
  assert.equal(fromInputTime(toInputTime(1_795_621_440_000)), 1_795_621_440_000);
  assert.equal(fromInputTime('garbage'), null);
});

test('path stages: local and remote subnets and VPCs land in their own columns', () => {
  assert.deepEqual(stagesOf(PATH_INTER_VPC).map((i) => STAGES[i]),
    ['Local host', 'Local subnet', 'Local AZ', 'AZ pair', 'Local VPC', 'Gateway', 'Remote VPC', 'Remote subnet', 'Remote end']);
  // A service or an unknown address ends the path.
  assert.deepEqual(stagesOf(['host:a', 'subnet:s', 'az:z', 'vpc:v', 'service:object-store']), [0, 1, 2, 4, 9]);
  assert.deepEqual(stagesOf(['host:a', 'subnet:s', 'az:z', 'vpc:v', 'external:192.0.2.1']), [0, 1, 2, 4, 9]);
  // A local host with no subnet (address outside every subnet) still starts at column 0.
  assert.deepEqual(stagesOf(['host:10.0.9.9', 'external:192.0.2.1']), [0, 9]);
});

test('API counters: missing RTT stays unknown, never zero', () => {
  const c = counters({ data_transferred: 10, retransmissions: 2, timeouts: 1, round_trip_time_us: null, rtt_samples: 0, records: 3 });
  assert.deepEqual(c, { bytes: 10, retransmissions: 2, timeouts: 1, rtt_us: null, rtt_samples: 0, records: 3 });
  assert.equal(counters({ round_trip_time_us: 1234 }).rtt_us, 1234);
  assert.deepEqual(counters(undefined), { bytes: 0, retransmissions: 0, timeouts: 0, rtt_us: null, rtt_samples: 0, records: 0 });
});

test('"Create monitor" from a flow: local subnet, remote subnet or service, never a host', async () => {
  const { flowResources } = await import('../../nfm-collector/ui/js/views/common.js');
  assert.deepEqual(flowResources({ path: PATH_INTER_VPC }), { local: 'subnet:subnet-app-a', remote: 'subnet:subnet-db-b', remoteEnd: 'host:db-4' });
  assert.equal(flowResources({ path: ['host:a', 'subnet:s', 'az:z', 'vpc:v', 'service:kv-store'] }).remote, 'service:kv-store');
  // An unknown remote address: nothing to pick, so the form starts at Everywhere.
  assert.equal(flowResources({ path: ['host:a', 'subnet:s', 'az:z', 'vpc:v', 'external:192.0.2.1'] }).remote, null);
});

test('monitor form validation names the field at fault', async () => {
  const { validate } = await import('../../nfm-collector/ui/js/views/monitors.js');
  assert.deepEqual(validate({ name: 'ok-name_1.x', local: ['subnet:a'], remote: [], everywhere: true }), {});
  assert.deepEqual(Object.keys(validate({ name: '', local: [], remote: [], everywhere: false })).sort(), ['local', 'name', 'remote']);
  assert.match(validate({ name: 'has space', local: ['vpc:v'], remote: [], everywhere: true }).name, /no spaces/);
  assert.ok(validate({ name: 'x'.repeat(128), local: ['vpc:v'], remote: [], everywhere: true }).name === undefined);
  assert.ok(validate({ name: 'x'.repeat(129), local: ['vpc:v'], remote: [], everywhere: true }).name);
});
