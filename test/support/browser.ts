import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { projectRoot } from '../../src/config.js';

/**
 * Headless Debian Chromium through playwright-core, with a fresh profile per
 * launch (deleted on close) and no background network traffic.
 */

export const CHROMIUM_BIN = '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export interface TestBrowser {
  context: BrowserContext;
  newPage(): Promise<Page>;
  /** Full-page screenshot into test-artifacts/<name>.png; returns the path. */
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM_BIN);
}

export function artifactsDir(): string {
  return join(projectRoot(), 'test-artifacts');
}

export async function launchBrowser(opts: { javaScript?: boolean; locale?: string } = {}): Promise<TestBrowser> {
  if (!chromiumAvailable()) {
    throw new Error('Chromium is not installed at /usr/bin/chromium: apt-get install -y chromium (or run scripts/ensure-services.mjs)');
  }
  const userDataDir = await mkdtemp(join(tmpdir(), 'chromium-profile-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_BIN,
      headless: true,
      args: CHROMIUM_ARGS,
      javaScriptEnabled: opts.javaScript ?? true,
      locale: opts.locale ?? 'zh-CN',
      timeout: 30_000,
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  let closed = false;
  return {
    context,
    newPage: async () => context.newPage(),
    async screenshot(page, name) {
      const dir = artifactsDir();
      await mkdir(dir, { recursive: true });
      const path = join(dir, `${name.replace(/[^\w.-]+/g, '_')}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    async close() {
      if (closed) return;
      closed = true;
      await context.close().catch(() => undefined);
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}
