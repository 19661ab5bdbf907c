// Drives the browser chat app (clients/web/) in headless Chromium (Debian's, through npm
// playwright-core; no browser download) as two users, each in a browser context of their own:
//   node web-chat.mjs <Ann's link> <Bob's link> <Ann's account> <Bob's account> <image> <artifacts dir>
// Ann starts a chat with Bob; Bob's unread count rises with each message and clears when he
// opens the chat, which shows Ann "Read"; Bob's typing shows on Ann's side; Ann's image appears
// on Bob's side, then a video; Ann recalls a message; Ann's socket is closed under her and the app reconnects
// by itself and shows what Bob sent meanwhile. Screenshots of both windows go to the artifacts
// directory. Prints one JSON line: {ok, steps, failed?, error?, console} and exits 0 or 1.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const toolsDir = process.env.PLAYWRIGHT_DIR || path.resolve(import.meta.dirname, '../../.tools/node');
const { chromium } = require(path.join(toolsDir, 'node_modules/playwright-core'));

const [annUrl, bobUrl, annId, bobId, image, artifacts] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const T = 20000; // per step

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const steps = [];
const consoleErrors = [];
let failed = null;
let error = null;
const pages = {};
const diag = {};

async function page(url, who) {
  const ctx = await browser.newContext({ viewport: { width: 900, height: 600 } });
  const p = await ctx.newPage();
  p.on('console', (m) => {
    // A thumbnail answers 404 until the thumbnail function wrote it; the app then shows the
    // original. Everything else logged as an error fails the run (CSP violations included).
    if (m.type() === 'error' && !/Failed to load resource.*404/.test(m.text())) consoleErrors.push(`${who}: ${m.text()}`);
  });
  p.on('pageerror', (e) => consoleErrors.push(`${who}: ${e.message}`));
  pages[who] = p;
  await p.goto(url);
  return p;
}
const conversation = (p, peer) => p.locator(`[data-testid=conversation][data-peer="${peer}"]`);
const unread = (p, peer) => conversation(p, peer).locator('[data-testid=unread]');
const rows = (p) => p.locator('[data-testid=message]');
const online = (p) => p.locator('[data-testid=status][data-state=open]').waitFor({ timeout: T });
async function say(p, text) {
  await p.getByTestId('composer').fill(text);
  await p.getByTestId('send').click();
  await rows(p).filter({ hasText: text }).and(p.locator('[data-status=sent],[data-status=read]')).waitFor({ timeout: T });
}
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    steps.push({ name, ms: Date.now() - t0 });
  } catch (e) {
    failed = name;
    throw e;
  }
}

try {
  let ann;
  let bob;
  await step('both open and connect', async () => {
    ann = await page(annUrl, 'ann');
    bob = await page(bobUrl, 'bob');
    await online(ann);
    await online(bob);
    if (/token=/.test(ann.url())) throw new Error('the token stayed in the address bar');
  });
  await step('Ann starts a chat with Bob and sends', async () => {
    await ann.getByTestId('new-chat').fill(bobId);
    await ann.getByTestId('new-chat').press('Enter');
    await say(ann, 'Hello Bob');
  });
  await step("Bob's unread count rises", async () => {
    await unread(bob, annId).filter({ hasText: /^1$/ }).waitFor({ timeout: T });
    await say(ann, 'Are you there?');
    await unread(bob, annId).filter({ hasText: /^2$/ }).waitFor({ timeout: T });
  });
  await step('Bob opens the chat: unread clears, Ann sees Read', async () => {
    await conversation(bob, annId).click();
    await rows(bob).filter({ hasText: 'Are you there?' }).waitFor({ timeout: T });
    await unread(bob, annId).waitFor({ state: 'detached', timeout: T });
    await rows(ann).filter({ hasText: 'Are you there?' }).and(ann.locator('[data-status=read]')).waitFor({ timeout: T });
  });
  await step('Bob types: Ann sees typing', async () => {
    await bob.getByTestId('composer').pressSequentially('Hi Ann', { delay: 50 });
    await ann.getByTestId('typing').waitFor({ state: 'visible', timeout: T });
    await bob.getByTestId('send').click();
    await rows(ann).filter({ hasText: 'Hi Ann' }).waitFor({ timeout: T });
  });
  await step("Ann's image appears on Bob's side", async () => {
    await ann.getByTestId('file').setInputFiles(image);
    await ann.locator('[data-testid=message][data-kind=image]:is([data-status=sent],[data-status=read])').waitFor({ timeout: T });
    await bob.waitForFunction(() => {
      const img = document.querySelector('[data-testid=message][data-kind=image] img');
      return img && img.complete && img.naturalWidth > 0;
    }, null, { timeout: T, polling: 200 });
    await ann.screenshot({ path: path.join(artifacts, 'ann.png') });
    await bob.screenshot({ path: path.join(artifacts, 'bob.png') });
  });
  await step("Ann's video appears on Bob's side", async () => {
    // Bytes no browser can decode: no poster frame, so it goes without one (S3 checks type
    // and size, not content); Bob gets a playable-looking video row with the original's URL.
    const clip = path.join(artifacts, 'clip.mp4');
    fs.writeFileSync(clip, Buffer.alloc(4096, 7));
    await ann.getByTestId('file').setInputFiles(clip);
    await ann.locator('[data-testid=message][data-kind=video]:is([data-status=sent],[data-status=read])').waitFor({ timeout: T });
    const src = await bob.locator('[data-testid=message][data-kind=video] video').getAttribute('src', { timeout: T });
    if (!/^http:\/\/127\.0\.0\.1:\d+\/.+\/m\/v\//.test(src)) throw new Error(`video src ${src}`);
  });
  await step('Ann recalls a message', async () => {
    await rows(ann).filter({ hasText: 'Hello Bob' }).getByTestId('recall').click();
    await rows(bob).filter({ hasText: 'Hello Bob' }).waitFor({ state: 'detached', timeout: T });
    await bob.locator('[data-testid=message][data-kind=recalled]').waitFor({ timeout: T });
  });
  await step('Ann drops and reconnects by herself; nothing sent meanwhile is missed', async () => {
    await ann.evaluate(() => { for (const ws of window.WxWeb.sockets) ws.close(); });
    await ann.locator('[data-testid=status]:not([data-state=open])').waitFor({ timeout: T });
    await bob.getByTestId('composer').fill('While you were away');
    await bob.getByTestId('send').click();
    await online(ann);
    await rows(ann).filter({ hasText: 'While you were away' }).waitFor({ timeout: T });
    await say(ann, 'Back again');
    await rows(bob).filter({ hasText: 'Back again' }).waitFor({ timeout: T });
    await ann.screenshot({ path: path.join(artifacts, 'ann-after-reconnect.png') });
  });
  await step('no duplicate rows', async () => {
    for (const [who, p] of [['ann', ann], ['bob', bob]]) {
      const ids = await rows(p).evaluateAll((els) => els.map((e) => e.dataset.id));
      if (new Set(ids).size !== ids.length || ids.some((id) => !id)) throw new Error(`${who}: rows ${JSON.stringify(ids)}`);
    }
  });
  if (consoleErrors.length) {
    failed = 'console';
    throw new Error('errors in the page console');
  }
} catch (e) {
  error = String(e && e.message ? e.message.split('\n')[0] : e);
  // What each window showed, and a screenshot of it, to see why.
  for (const [who, p] of Object.entries(pages)) {
    try {
      diag[who] = await p.evaluate(() => ({
        url: location.href,
        status: document.querySelector('[data-testid=status]')?.dataset.state,
        toast: document.getElementById('toast')?.textContent,
        signin: !document.getElementById('signin')?.hidden,
      }));
      await p.screenshot({ path: path.join(artifacts, `${who}-failed.png`) });
    } catch (_) { /* the page is gone */ }
  }
} finally {
  await browser.close();
}
const ok = !failed && !error;
console.log(JSON.stringify({ ok, steps, failed, error, console: consoleErrors, pages: ok ? undefined : diag }));
process.exit(ok ? 0 : 1);
