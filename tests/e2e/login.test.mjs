// Login end-to-end test (issue 15) in headless Chromium against a collector served over HTTPS
// with an admin and a viewer token (scripts/test.d/login.sh starts it and passes everything
// through the environment). It proves, from what the browser sees:
// - the dashboard's address shows the login page, not a 401;
// - a wrong token is refused with a clear message, and no session cookie is set;
// - the right token opens the dashboard, which loads data (the monitor created by the script);
//   the session cookie is HttpOnly, SameSite=Strict and Secure; no token is in the URL, in local
//   or session storage, or readable by the page's JavaScript;
// - a viewer's session reads but its write is refused (403) with the collector's message;
// - logout ends the session: back to the login page, and the old session no longer opens the
//   dashboard.
// Every wait is bounded. Screenshots go to $NFM_SCREENSHOTS.

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run scripts/test.d/login.sh)`);
  return v;
};
const BASE = env('NFM_URL'); // https://127.0.0.1:PORT
const ADMIN = env('NFM_ADMIN_TOKEN');
const VIEWER = env('NFM_VIEWER_TOKEN');
const MONITOR = env('NFM_MONITOR');
const SHOTS = env('NFM_SCREENSHOTS');

const started = Date.now();
const log = (...a) => console.log(`[login +${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page, token) {
  await page.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
  assert.equal(new URL(page.url()).pathname, '/login', `GET / should land on /login, got ${page.url()}`);
  await page.fill('#token', token);
  await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), page.click('button[type=submit]')]);
}

async function noTokenAnywhere(page) {
  for (const t of [ADMIN, VIEWER]) {
    assert.ok(!page.url().includes(t), 'a token is in the URL');
    const stored = await page.evaluate(() => JSON.stringify({ l: { ...localStorage }, s: { ...sessionStorage } }));
    assert.ok(!stored.includes(t), `a token is in web storage: ${stored}`);
  }
  const visible = await page.evaluate(() => document.cookie);
  assert.ok(!visible.includes('nfm_session'), `the session cookie is readable by JavaScript: ${visible}`);
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nfm-login-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true, // the test's own self-signed certificate
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    timeout: 30000,
  });
  const pageErrors = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15000);
    page.on('pageerror', (e) => pageErrors.push(e.message));

    // ---- The dashboard's address without a session: the login page.
    const resp = await page.goto(`${BASE}/#/monitors`, { waitUntil: 'domcontentloaded' });
    assert.equal(resp.status(), 200, 'the login page is a 200');
    assert.equal(new URL(page.url()).pathname, '/login');
    await page.waitForSelector('form#login input#token[type=password]');
    await shot(page, '1-login');
    log('login page shown for /');

    // ---- A wrong token: refused with a clear message, no cookie.
    await page.fill('#token', 'not-the-token');
    await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), page.click('button[type=submit]')]);
    const err = await page.locator('#error').innerText();
    assert.match(err, /not valid/i, `the wrong-token message: ${err}`);
    assert.equal((await context.cookies()).filter((c) => c.name === 'nfm_session').length, 0);
    await shot(page, '2-wrong-token');
    log('wrong token refused:', err);

    // ---- The admin token: the dashboard loads data.
    await signIn(page, ADMIN);
    assert.equal(new URL(page.url()).pathname, '/', `after login: ${page.url()}`);
    const [cookie] = (await context.cookies()).filter((c) => c.name === 'nfm_session');
    assert.ok(cookie, 'a session cookie');
    assert.equal(cookie.httpOnly, true, 'HttpOnly');
    assert.equal(cookie.secure, true, 'Secure');
    assert.equal(cookie.sameSite, 'Strict', 'SameSite=Strict');
    assert.ok(cookie.expires > Date.now() / 1000, 'the cookie expires');
    await page.goto(`${BASE}/#/monitors?refresh=0`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('body[data-state=ready]');
    await page.getByText(MONITOR, { exact: false }).first().waitFor();
    await page.waitForSelector('#session #logout');
    assert.match(await page.locator('#session').innerText(), /admin/);
    await noTokenAnywhere(page);
    await shot(page, '3-dashboard-admin');
    log('admin signed in; the dashboard lists monitor', MONITOR);

    // ---- Logout: back to the login page; the old session is gone.
    await Promise.all([page.waitForNavigation({ waitUntil: 'domcontentloaded' }), page.click('#logout')]);
    assert.equal(new URL(page.url()).pathname, '/login', `after logout: ${page.url()}`);
    await page.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
    assert.equal(new URL(page.url()).pathname, '/login');
    const api = await page.evaluate(async () => (await fetch('/api/status')).status);
    assert.equal(api, 401, 'the API refuses after logout');
    await shot(page, '4-logged-out');
    log('logged out');

    // ---- A viewer reads, and its write is refused with the collector's message.
    await signIn(page, VIEWER);
    await page.goto(`${BASE}/#/monitors?refresh=0`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('body[data-state=ready]');
    await page.getByText(MONITOR, { exact: false }).first().waitFor();
    assert.match(await page.locator('#session').innerText(), /viewer/);
    const write = await page.evaluate(async () => {
      const r = await fetch('/api/monitors', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"x","local":["subnet:subnet-app-a"]}' });
      return { status: r.status, body: await r.text() };
    });
    assert.equal(write.status, 403, JSON.stringify(write));
    assert.match(write.body, /reads only/);
    await noTokenAnywhere(page);
    await shot(page, '5-dashboard-viewer');
    log('viewer reads, cannot write:', write.body);

    // ---- An expired or unknown session (the cookie of a session the collector no longer
    // holds) goes back to the login page rather than showing errors.
    await context.clearCookies();
    await context.addCookies([{ name: 'nfm_session', value: '0'.repeat(64), url: BASE, httpOnly: true, secure: true, sameSite: 'Strict' }]);
    // The open dashboard's next request gets a 401 and its JavaScript goes to the login page...
    await page.evaluate(() => { location.hash = '#/agents?refresh=0'; });
    await page.waitForURL((u) => u.pathname === '/login', { timeout: 15000 });
    // ...and a fresh load of the dashboard is redirected there by the collector.
    await page.goto(`${BASE}/?again`, { waitUntil: 'domcontentloaded' });
    assert.equal(new URL(page.url()).pathname, '/login');
    log('a dead session cookie lands on the login page (from the open dashboard and on load)');

    assert.deepEqual(pageErrors, [], `page errors: ${pageErrors.join('; ')}`);
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

main().then(() => { log('login flow: all checks passed'); }, (e) => { console.error(e); process.exit(1); });
