// Drives the browser demo in headless Chromium (Debian's, through npm playwright-core): Ann
// picks an image, the demo gets a ticket, uploads it with the POST form straight to the local
// S3 (cross-origin, so the bucket's CORS rule is exercised) and sends it; Bob's page must show
// the image. Usage: node demo-upload.mjs <Ann's demo URL> <Bob's demo URL> <image file> [screenshot.png]
// Prints one JSON line and exits 0 when Bob's page shows a loaded image, 1 otherwise.
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const toolsDir = process.env.PLAYWRIGHT_DIR || path.resolve(import.meta.dirname, '../../.tools/node');
const { chromium } = require(path.join(toolsDir, 'node_modules/playwright-core'));

const [annUrl, bobUrl, image, shot] = process.argv.slice(2);
const deadline = (ms) => new Promise((_, fail) => setTimeout(() => fail(new Error('timed out')), ms));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let result = { ok: false };
try {
  const ctx = await browser.newContext();
  const ann = await ctx.newPage();
  const bob = await ctx.newPage();
  const errors = [];
  for (const p of [ann, bob]) p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await ann.goto(annUrl);
  await bob.goto(bobUrl);
  for (const p of [ann, bob]) await p.waitForFunction(() => document.getElementById('status').textContent === 'connected', null, { timeout: 15000 });
  // Ann picks the file (the hidden <input type=file> behind the paperclip).
  await ann.setInputFiles('#file', image);
  // Bob's list gets an image row whose picture has loaded (thumbnail or original).
  const loaded = await Promise.race([
    bob.waitForFunction(() => {
      const img = document.querySelector('#log .row img');
      return img && img.complete && img.naturalWidth > 0 ? { src: img.currentSrc, w: img.naturalWidth, h: img.naturalHeight } : null;
    }, null, { timeout: 30000, polling: 200 }).then((h) => h.jsonValue()),
    deadline(31000),
  ]);
  const annErrors = await ann.$$eval('#log .error', (els) => els.map((e) => e.textContent));
  if (shot) await bob.screenshot({ path: shot });
  result = { ok: annErrors.length === 0, image: loaded, errors: annErrors.concat(errors) };
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
