// The console in a real browser: Debian's chromium driven by playwright-core.
//
// Started by tests/e2e/test_console_browser.py with CONSOLE_E2E (JSON: the console's
// address, keys, service ARNs, where to put screenshots). Prints one JSON line per
// scenario; asks the test for outside events (another client deleting a service, the
// object store going down) with {"need": ...} lines and waits for the answer on stdin.
// A failed scenario leaves a screenshot and the run goes on with the next one.
'use strict';

const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

const config = JSON.parse(process.env.CONSOLE_E2E);
const only = (process.env.CONSOLE_E2E_ONLY || '').split(',').filter(Boolean);
const TIMEOUT = 10000;

// ----- talking to the test -----

const replies = new Map();
let nextId = 1;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const answer = JSON.parse(line);
  const waiting = replies.get(answer.id);
  if (waiting) { replies.delete(answer.id); waiting(answer); }
});

function need(what, args = {}) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    replies.set(id, (answer) => (answer.ok ? resolve(answer) : reject(new Error(answer.error))));
    process.stdout.write(JSON.stringify({ need: what, id, args }) + '\n');
  });
}

function report(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// ----- helpers -----

async function signIn(page, token) {
  await page.goto(config.base + '/services');
  check(new URL(page.url()).pathname === '/signin', 'an anonymous visit is not sent to sign in');
  await page.getByLabel('API key').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
}

function row(page, name) {
  return page.locator(`#service-rows tr[data-name="${name}"]`);
}

async function openService(page, name) {
  await page.goto(config.base + '/service?arn=' + encodeURIComponent(config.services[name]));
  await page.getByRole('heading', { name, level: 1 }).waitFor();
}

async function statusIs(page, text) {
  await page.locator('#overview-h + dl .badge', { hasText: text }).waitFor({ timeout: TIMEOUT });
}

async function openDeleteDialog(page) {
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  const dialog = page.locator('#delete-dialog[open]');
  await dialog.getByRole('heading', { name: /^Delete / }).waitFor();
  return dialog;
}

// ----- scenarios -----

const scenarios = {
  async 'sign in'({ page }) {
    await page.goto(config.base + '/services');
    await page.getByLabel('API key').fill('not-a-key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'not a ServiceControl API key' }).waitFor();
    await page.getByLabel('API key').fill(config.writer);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
    const who = await page.locator('.who').textContent();
    check(who.includes(config.account) && who.includes('writer'), `header says ${who}`);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'sc_session');
    check(session && session.httpOnly && session.sameSite === 'Strict', 'session cookie flags');
    check(!(await page.evaluate(() => document.cookie)).includes('sc_session'),
      'the session cookie is readable from script');
  },

  async 'the list'({ page }) {
    await page.goto(config.base + '/services');
    for (const name of ['alpha-web', 'alpha-api', 'pause-me']) {
      await row(page, name).waitFor();
    }
    await page.screenshot({ path: path.join(config.docs, 'console-services.png') });
    const alpha = row(page, 'alpha-web');
    check((await alpha.locator('.badge').textContent()).trim() === 'Running', 'status text');
    check((await alpha.locator('.url').textContent()).startsWith('https://'), 'URL column');
    check(/\d{4}-\d\d-\d\d/.test(await alpha.locator('time').textContent()), 'last updated');
    await page.getByLabel('Filter by name').fill('alpha');
    await page.getByLabel('Filter by name').press('Enter');
    await page.waitForURL(/name=alpha/);
    const names = await page.locator('#service-rows tr').evaluateAll(
      (rows) => rows.map((r) => r.dataset.name));
    check(JSON.stringify(names.sort()) === JSON.stringify(['alpha-api', 'alpha-web']),
      `filtered rows: ${names}`);
    await page.goto(config.base + '/services?size=2');
    await page.getByText(/Page 1 of \d+/).waitFor();
    await page.getByRole('link', { name: 'Next page' }).click();
    await page.getByText(/Page 2 of \d+/).waitFor();
  },

  async 'pause and resume'({ page }) {
    await openService(page, 'pause-me');
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByRole('status').filter({ hasText: 'Pausing pause-me' }).waitFor();
    await statusIs(page, 'Paused');
    await page.getByRole('button', { name: 'Resume' }).waitFor();
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.getByRole('status').filter({ hasText: 'Resuming pause-me' }).waitFor();
    await statusIs(page, 'Running');
    const activity = page.locator('table.operations tbody tr');
    const types = await activity.locator('th').allTextContents();
    check(types.some((t) => t.includes('PAUSE_SERVICE')) && types.some((t) => t.includes('RESUME_SERVICE')),
      `activity lists ${types}`);
  },

  async 'the full delete flow'({ page }) {
    await openService(page, 'delete-me');
    await page.locator('#domains-h + table').getByRole('rowheader', { name: 'www.delete-me.example' }).waitFor();
    await page.screenshot({ path: path.join(config.docs, 'console-dashboard.png'), fullPage: true });
    const dialog = await openDeleteDialog(page);
    const focused = await page.evaluate(() => document.activeElement.id);
    check(focused === 'confirm-name', `focus went to ${focused}, not the confirmation input`);
    const deleted = await dialog.locator('#plan-deleted').textContent();
    check(new RegExp(`${config.plan.image_objects} objects`).test(deleted), `plan: ${deleted}`);
    check(deleted.includes('service_configuration') && deleted.includes('www.delete-me.example'),
      `plan: ${deleted}`);
    const kept = await dialog.locator('#plan-kept').textContent();
    check(kept.includes('Certificate for www.delete-me.example kept until') && /in 6 days 23 hours|in 7 days/.test(kept),
      `kept: ${kept}`);
    check(kept.includes('No connection is used'), `kept: ${kept}`);
    const confirm = dialog.getByRole('button', { name: 'Delete', exact: true });
    check(await confirm.isDisabled(), 'Delete is enabled before the name is typed');
    await dialog.getByLabel(/To confirm, type/).fill('delete-m');
    check(await confirm.isDisabled(), 'Delete is enabled with a partial name');
    await dialog.getByLabel(/To confirm, type/).fill('delete-me');
    check(await confirm.isEnabled(), 'Delete stays disabled with the name typed');
    await page.screenshot({ path: path.join(config.docs, 'console-delete-dialog.png') });
    // The delete's job is held while the list shows the row in progress.
    await need('hold-deletes');
    await confirm.click();
    await page.waitForURL(/\/services$/);
    await page.getByRole('status').filter({ hasText: 'Deleting delete-me: operation' }).waitFor();
    await row(page, 'delete-me').locator('.badge', { hasText: 'Operation in progress' }).waitFor();
    await need('release-deletes');
    await row(page, 'delete-me').waitFor({ state: 'detached', timeout: TIMEOUT });
  },

  async 'a failed delete and its retry'({ page }) {
    await need('store-down');
    await openService(page, 'fragile');
    const dialog = await openDeleteDialog(page);
    await dialog.getByLabel(/To confirm, type/).fill('delete');
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.waitForURL(/\/services$/);
    await row(page, 'fragile').locator('.badge', { hasText: 'Delete failed' }).waitFor({ timeout: TIMEOUT });
    await openService(page, 'fragile');
    await page.locator('#overview-h + dl').getByText('DELETE_FAILED').waitFor();
    const reason = await page.locator('#overview-h + dl .reason').textContent();
    check(/unavailable|down/i.test(reason), `reason: ${reason}`);
    const failed = page.locator('table.operations tbody tr').first();
    check((await failed.locator('.badge').textContent()).trim() === 'Failed', 'operation status');
    check(/down|unavailable/i.test(await failed.locator('.error-cell').textContent()), 'operation error');
    await need('store-up');
    await page.getByRole('button', { name: 'Retry delete' }).click();
    await page.waitForURL(/\/services$/);
    await row(page, 'fragile').waitFor({ state: 'detached', timeout: TIMEOUT });
  },

  async 'a live update while another client deletes'({ page }) {
    await page.goto(config.base + '/services');
    await row(page, 'other-client').waitFor();
    await page.locator('#live-status', { hasText: 'Live updates on' }).waitFor();
    await page.evaluate(() => {
      window.notReloaded = true;
      // The moment the list first changes, on the page's own clock.
      new MutationObserver(() => { window.firstChange = window.firstChange || performance.now(); })
        .observe(document.getElementById('service-rows'), { childList: true, subtree: true });
    });
    const before = await page.evaluate(() => performance.now());
    // Answered once the other client's DeleteService has committed.
    await need('delete-other');
    await row(page, 'other-client').waitFor({ state: 'detached', timeout: TIMEOUT });
    check(await page.evaluate(() => window.notReloaded === true), 'the page was reloaded');
    const [changed, gone] = await page.evaluate(() => [window.firstChange, performance.now()]);
    report({ measure: 'live-first-change-ms', value: Math.round(changed - before) });
    report({ measure: 'live-removal-ms', value: Math.round(gone - before) });
    await need('create-other');
    await row(page, 'late-arrival').waitFor({ timeout: TIMEOUT });
    check(await page.evaluate(() => window.notReloaded === true), 'the page was reloaded');
  },

  async 'keyboard-only delete'({ page }) {
    await openService(page, 'keyboard');
    await page.locator('body').focus();
    let reached = false;
    for (let i = 0; i < 30 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement.id === 'delete-button');
    }
    check(reached, 'Tab never reaches the Delete button');
    await page.keyboard.press('Enter');
    await page.locator('#delete-dialog[open]').waitFor();
    await page.waitForFunction(() => document.activeElement.id === 'confirm-name');
    await page.keyboard.press('Escape');
    await page.locator('#delete-dialog[open]').waitFor({ state: 'detached' });
    await page.waitForFunction(() => document.activeElement.id === 'delete-button');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement.id === 'confirm-name');
    await page.keyboard.type('keyboard');
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement.textContent) === 'Cancel', 'Tab order: Cancel');
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement.id) === 'confirm-delete', 'Tab order: Delete');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/services$/);
    await row(page, 'keyboard').waitFor({ state: 'detached', timeout: TIMEOUT });
  },

  async 'a request without the CSRF token is refused'({ page }) {
    await openService(page, 'alpha-web');
    const status = await page.evaluate(async (arn) => {
      const answer = await fetch('/service/pause', {
        method: 'POST',
        body: new URLSearchParams({ arn }),
        headers: { 'X-Requested-With': 'console' },
      });
      return answer.status;
    }, config.services['alpha-web']);
    check(status === 403, `a forged pause answered ${status}`);
    await page.reload();
    await statusIs(page, 'Running');
  },

  async 'a reader key sees no actions'({ page }) {
    // The writer's session ends here; a reader key signs in instead.
    await page.context().clearCookies();
    try {
      await signIn(page, config.reader);
      await openService(page, 'alpha-web');
      for (const name of ['Pause', 'Resume', 'Delete', 'Retry delete']) {
        const count = await page.getByRole('button', { name, exact: true }).count();
        check(count === 0, `a reader sees a ${name} button`);
      }
      const status = await page.evaluate(async (arn) => {
        const csrf = document.querySelector('main').dataset.csrf;
        const answer = await fetch('/service/pause', {
          method: 'POST', body: new URLSearchParams({ arn, csrf }),
          headers: { 'X-Requested-With': 'console' },
        });
        return [answer.status, await answer.text()];
      }, config.services['alpha-web']);
      check(status[0] === 403 && status[1].includes('A reader key may not call PauseService'),
        `a reader's pause answered ${status[0]}`);
    } finally {
      await page.context().clearCookies();
    }
  },
};

async function main() {
  // A fresh profile directory each run (playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(config.profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    timeout: 30000,
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (error) => report({ pageerror: String(error) }));
  try {
    for (const [name, run] of Object.entries(scenarios)) {
      if (only.length && !only.includes(name)) continue;
      const started = Date.now();
      try {
        if (name !== 'sign in' && !(await context.cookies()).some((c) => c.name === 'sc_session')) {
          await signIn(page, config.writer);
        }
        await run({ page });
        report({ scenario: name, ok: true, ms: Date.now() - started });
      } catch (error) {
        const shot = path.join(config.failures, name.replace(/\W+/g, '-') + '.png');
        await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
        report({ scenario: name, ok: false, ms: Date.now() - started, error: String(error.stack || error), screenshot: shot });
      }
    }
  } finally {
    await context.close();
  }
  process.exit(0);
}

main().catch((error) => {
  report({ fatal: String(error.stack || error) });
  process.exit(1);
});
