// End-to-end test: a person logs in through the broker in headless Chromium, at a real OAuth 2.0 /
// OpenID Connect server (oidc-provider, see provider.mjs); then headless clients get, refresh and
// revoke tokens through the broker over plain HTTP, and the provider is asked whether it accepts
// them. Run by scripts/e2e.sh, which starts the provider and the broker and sets:
//
//   BROKER_URL, PROVIDER_URL   base URLs (http://127.0.0.1:<port>)
//   API_KEY, OAUTH_STATE       the broker's API key and static state
//   CLIENT_ID, CLIENT_SECRET   the broker's client at the provider (the test introspects with it)
//   SCOPES                     what the broker asks for ("openid offline_access")
//   TOKEN_AUTH_METHOD          how the client authenticates (client_secret_post or _basic)
//   ACCESS_TOKEN_TTL           the provider's access token lifetime, seconds
//   REFRESH_SKEW               the broker's REFRESH_SKEW, seconds
//   SCREENSHOT_DIR             where the PNGs go
//   CHROMIUM                   the browser (default /usr/bin/chromium)
//
// Prints one line per check and ends with `e2e: N passed, N failed`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') throw new Error(`${name} is not set`);
  return value;
};

const BROKER = env('BROKER_URL');
const PROVIDER = env('PROVIDER_URL');
const API_KEY = env('API_KEY');
const OAUTH_STATE = env('OAUTH_STATE');
const CLIENT_ID = env('CLIENT_ID');
const CLIENT_SECRET = env('CLIENT_SECRET');
const SCOPES = env('SCOPES', 'openid offline_access');
const ACCESS_TOKEN_TTL = Number(env('ACCESS_TOKEN_TTL', '70'));
const REFRESH_SKEW = Number(env('REFRESH_SKEW', '65'));
const SHOTS = env('SCREENSHOT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const OVERALL_TIMEOUT_MS = Number(env('E2E_TIMEOUT_MS', '120000'));
const STEP_TIMEOUT_MS = 15000;
const ACCOUNT = 'e2e-user';

mkdirSync(SHOTS, { recursive: true });

// ---------------------------------------------------------------------------------------------
// Small helpers

let checks = 0;
function ok(condition, what, detail) {
  if (!condition) {
    const extra = detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`;
    throw new Error(`check failed: ${what}${extra}`);
  }
  checks += 1;
  console.log(`  ok ${String(checks).padStart(2)}  ${what}`);
}
const step = (title) => console.log(`-- ${title}`);
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });
const nowSeconds = () => Math.floor(Date.now() / 1000);

async function http(url, { method = 'GET', headers = {}, form, key } = {}) {
  const h = { ...headers };
  if (key !== undefined) h.authorization = `Bearer ${key}`;
  let body;
  if (form) {
    h['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const response = await fetch(url, {
    method, headers: h, body, redirect: 'manual', signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  });
  const text = await response.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: response.status, headers: response.headers, text, json };
}

const broker = (path, options) => http(`${BROKER}${path}`, options);
// The test authenticates as the broker's client, the way it is registered at the provider.
const basic = env('TOKEN_AUTH_METHOD', 'client_secret_post') === 'client_secret_basic';
const introspect = (token) => http(`${PROVIDER}/token/introspection`, {
  method: 'POST',
  headers: basic ? { authorization: `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}` } : {},
  form: basic ? { token } : { client_id: CLIENT_ID, client_secret: CLIENT_SECRET, token },
});
const userinfo = (token) => http(`${PROVIDER}/me`, { headers: { authorization: `Bearer ${token}` } });
const providerEvents = async () => (await http(`${PROVIDER}/__e2e/events`)).json;

// Keeps only what a log may show of a response: the error fields and the token's tail.
const describe = (r) => ({
  status: r.status,
  body: r.json ? { ...r.json, access_token: r.json.access_token ? `…${r.json.access_token.slice(-6)}` : undefined } : r.text.slice(0, 300),
});

let page;
async function shot(name) {
  const path = join(SHOTS, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`     screenshot ${path}`);
}

// What the browser showed when a check failed in it: its URL, text and a screenshot.
let pageFailure;
async function failureShot() {
  if (!page || page.isClosed()) return;
  try {
    const text = await page.locator('body').innerText({ timeout: 2000 });
    await page.screenshot({ path: join(SHOTS, 'failure.png'), fullPage: true, timeout: 5000 });
    pageFailure = `     page: ${page.url()}\n     page text: ${text.slice(0, 600).replace(/\s+/g, ' ')}\n     screenshot ${join(SHOTS, 'failure.png')}`;
  } catch { /* the browser may be gone */ }
}

// ---------------------------------------------------------------------------------------------
// The test

async function run() {
  step('broker refuses /login without the right key, and issues a fresh state per login');
  {
    const wrong = await broker('/login', { method: 'POST', form: { api_key: 'not-the-key' } });
    ok(wrong.status === 401 || wrong.status === 403, 'POST /login with a wrong key is refused (401/403)', describe(wrong));
    ok(!wrong.headers.get('location'), 'and does not redirect to the provider');
    const a = await broker('/login', { method: 'POST', form: { api_key: API_KEY } });
    const b = await broker('/login', { method: 'POST', form: { api_key: API_KEY } });
    ok(a.status === 302 && b.status === 302, 'POST /login with the key answers 302', [a.status, b.status]);
    const sa = new URL(a.headers.get('location')).searchParams.get('state');
    const sb = new URL(b.headers.get('location')).searchParams.get('state');
    ok(sa && sb && sa !== sb, 'each login gets its own state');
    const viaJson = await broker('/login', { key: API_KEY, headers: { accept: 'application/json' } });
    ok(viaJson.status === 200 && viaJson.json?.authorization_url?.startsWith(`${PROVIDER}/auth?`),
      'GET /login with the key in a header answers JSON with the authorization_url', describe(viaJson));
  }

  step('browser: the broker\'s login form');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: STEP_TIMEOUT_MS,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
    page = await context.newPage();
    const consoleErrors = [];
    // Errors the broker's pages cause (a CSP violation, a broken script). The browser's own
    // favicon request and the provider's pages (whose layout loads a web font from the Internet,
    // unreachable here) are not the broker's business.
    page.on('console', (m) => {
      const resource = m.location()?.url || '';
      if (m.type() !== 'error' || !page.url().startsWith(BROKER) || resource.endsWith('/favicon.ico')) return;
      consoleErrors.push(`${page.url()}: ${m.text()}${resource ? ` (${resource})` : ''}`);
    });
    const authorizeRequests = [];
    page.on('request', (r) => { if (r.url().startsWith(`${PROVIDER}/auth`)) authorizeRequests.push(r.url()); });

    const loginResponse = await page.goto(`${BROKER}/login`);
    ok(loginResponse.status() === 200, 'GET /login answers 200', loginResponse.status());
    ok((loginResponse.headers()['content-type'] || '').startsWith('text/html'), 'as HTML', loginResponse.headers()['content-type']);
    const form = page.locator('form:has(input[name="api_key"])');
    ok(await form.count() === 1, 'the page has one form with an api_key input');
    const keyInput = form.locator('input[name="api_key"]');
    ok(await keyInput.count() === 1, 'the form has one input named api_key');
    ok(await keyInput.getAttribute('type') === 'password', 'of type password');
    ok((await form.getAttribute('method') || '').toLowerCase() === 'post', 'the form posts');
    const action = await form.getAttribute('action');
    ok(action === null || action === '' || new URL(action, `${BROKER}/login`).href === `${BROKER}/login`, 'to /login', action);
    const submit = form.locator('button[type="submit"], button:not([type]), input[type="submit"]');
    ok(await submit.count() >= 1, 'and has a submit button');
    await keyInput.fill(API_KEY);
    await shot('01-broker-login.png');

    step('browser: submit the key, land on the provider\'s login page');
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(`${PROVIDER}/interaction/`)),
      submit.first().click(),
    ]);
    ok(authorizeRequests.length === 1, 'the broker sent the browser to the provider\'s authorization endpoint once', authorizeRequests.length);
    const auth = new URL(authorizeRequests[0]).searchParams;
    ok(auth.get('response_type') === 'code', 'response_type=code', auth.get('response_type'));
    ok(auth.get('client_id') === CLIENT_ID, 'client_id is the broker\'s', auth.get('client_id'));
    ok(auth.get('redirect_uri') === `${BROKER}/callback`, 'redirect_uri is the broker\'s /callback', auth.get('redirect_uri'));
    ok(auth.get('scope') === SCOPES, `scope is "${SCOPES}"`, auth.get('scope'));
    const state = auth.get('state') || '';
    ok(state.length >= 16 && state !== OAUTH_STATE, 'state is a fresh one-time value, not OAUTH_STATE', state.length);
    ok(auth.get('code_challenge_method') === 'S256', 'PKCE: code_challenge_method=S256', auth.get('code_challenge_method'));
    ok(/^[A-Za-z0-9_-]{43}$/.test(auth.get('code_challenge') || ''), 'PKCE: code_challenge is a base64url SHA-256', auth.get('code_challenge'));
    ok(await page.locator('input[name="login"]').count() === 1, 'the provider shows its sign-in form');
    await page.fill('input[name="login"]', ACCOUNT);
    await page.fill('input[name="password"]', 'any-password');
    await shot('02-provider-login.png');

    step('browser: sign in, land on the provider\'s consent page');
    await page.click('button[type="submit"]');
    await page.waitForSelector('input[name="prompt"][value="consent"]', { state: 'attached' });
    ok(await page.locator('button[type="submit"]').innerText() === 'Continue', 'the provider asks for consent');
    await shot('03-provider-consent.png');

    step('browser: consent, the provider redirects to the broker\'s /callback');
    const [callbackResponse] = await Promise.all([
      page.waitForResponse((r) => r.url().startsWith(`${BROKER}/callback`)),
      page.click('button[type="submit"]'),
    ]);
    await page.waitForLoadState();
    const callbackUrl = new URL(callbackResponse.url());
    ok(callbackUrl.searchParams.get('state') === state, 'the callback carries the state the broker issued');
    ok(Boolean(callbackUrl.searchParams.get('code')), 'and a code');
    ok(callbackResponse.status() === 200, '/callback answers 200', callbackResponse.status());
    const callbackText = await page.locator('body').innerText();
    ok(/authori[sz]ed/i.test(callbackText), 'the page says "Authorized"', callbackText.slice(0, 200));
    await shot('04-callback-success.png');
    const replay = await http(callbackUrl.href, { headers: { accept: 'application/json' } });
    ok(replay.status === 403 && replay.json?.error === 'invalid_state', 'the same callback again: 403 invalid_state (one-time state)', describe(replay));
    ok(consoleErrors.length === 0, 'no console errors on the broker\'s pages (e.g. CSP violations)', consoleErrors);
    await context.close();
  } catch (error) {
    await failureShot();
    throw error;
  } finally {
    await browser.close();
  }

  step('provider saw PKCE and issued a refresh token');
  let events = await providerEvents();
  const authz = events.filter((e) => e.event === 'authorization.success');
  ok(authz.length === 1, 'one authorization succeeded', authz.length);
  ok(authz[0].code_challenge_method === 'S256' && authz[0].has_code_challenge, 'with an S256 code challenge');
  // oidc-provider grants offline_access only with prompt=consent (OpenID Connect Core §11);
  // provider.mjs issues the refresh token regardless, so this is informational.
  console.log(`     granted scope: "${authz[0].scope}"`);
  const codeGrants = events.filter((e) => e.event === 'grant.success' && e.grant_type === 'authorization_code');
  ok(codeGrants.length === 1, 'the broker redeemed the code once (with its code_verifier)', codeGrants.length);
  let refreshTokens = events.filter((e) => e.event === 'refresh_token.saved');
  ok(refreshTokens.length === 1, 'one refresh token was issued', refreshTokens.length);
  const grant = refreshTokens[0].grant;

  step('a headless client gets the access token; the provider accepts it');
  const noKey = await broker('/token');
  ok(noKey.status === 401, 'GET /token without the key is 401', describe(noKey));
  const t1 = await broker('/token', { key: API_KEY });
  ok(t1.status === 200 && typeof t1.json?.access_token === 'string', 'GET /token answers 200 with an access_token', describe(t1));
  ok(!('refresh_token' in t1.json), 'and never the refresh token');
  ok(/^bearer$/i.test(t1.json.token_type), 'token_type Bearer', t1.json.token_type);
  ok(t1.json.expires_in > 0 && t1.json.expires_in <= ACCESS_TOKEN_TTL, `expires_in within the provider's ${ACCESS_TOKEN_TTL} s`, t1.json.expires_in);
  const me1 = await userinfo(t1.json.access_token);
  ok(me1.status === 200 && me1.json?.sub === ACCOUNT, `the provider's userinfo accepts it (sub=${ACCOUNT})`, describe(me1));
  const i1 = await introspect(t1.json.access_token);
  ok(i1.json?.active === true && i1.json.client_id === CLIENT_ID, 'introspection: active, issued to the broker\'s client', i1.json);
  const v1 = await broker('/verify', { key: API_KEY });
  ok(v1.status === 200, 'GET /verify answers 200', describe(v1));

  step('refresh: once the token is within REFRESH_SKEW of expiry, /token refreshes it (rotation)');
  async function refreshed(previous, label) {
    const due = previous.json.expires_at - REFRESH_SKEW + 1;
    const wait = Math.max(0, due - nowSeconds());
    ok(wait <= ACCESS_TOKEN_TTL - REFRESH_SKEW + 2, `${label}: due in ${wait} s`, wait);
    await sleep(wait * 1000 + 200);
    const before = (await providerEvents()).length;
    const t = await broker('/token', { key: API_KEY });
    ok(t.status === 200 && t.json?.access_token, `${label}: GET /token answers 200`, describe(t));
    ok(t.json.access_token !== previous.json.access_token, `${label}: with a new access token`);
    ok(t.json.expires_at > previous.json.expires_at, `${label}: that expires later`, [previous.json.expires_at, t.json.expires_at]);
    const fresh = (await providerEvents()).slice(before);
    const grants = fresh.filter((e) => e.event === 'grant.success' && e.grant_type === 'refresh_token');
    ok(grants.length === 1, `${label}: exactly one refresh reached the provider`, fresh);
    const me = await userinfo(t.json.access_token);
    ok(me.status === 200 && me.json?.sub === ACCOUNT, `${label}: the provider accepts the new token`, describe(me));
    return { t, fresh };
  }
  const r1 = await refreshed(t1, 'refresh 1');
  const consumed1 = r1.fresh.filter((e) => e.event === 'refresh_token.consumed');
  const saved1 = r1.fresh.filter((e) => e.event === 'refresh_token.saved');
  ok(consumed1.length === 1 && consumed1[0].id === refreshTokens[0].id, 'refresh 1: used the refresh token from the login, which the provider consumed', consumed1);
  ok(saved1.length === 1 && saved1[0].id !== refreshTokens[0].id && saved1[0].grant === grant, 'refresh 1: the provider rotated it', saved1);
  const r2 = await refreshed(r1.t, 'refresh 2');
  const consumed2 = r2.fresh.filter((e) => e.event === 'refresh_token.consumed');
  ok(consumed2.length === 1 && consumed2[0].id === saved1[0].id, 'refresh 2: used the rotated refresh token the broker stored', consumed2);
  const current = r2.t;

  step('min_ttl beyond what the provider gives: a warning, no refresh storm');
  {
    const before = (await providerEvents()).length;
    const t = await broker('/token?min_ttl=3000', { key: API_KEY });
    ok(t.status === 200 && typeof t.json?.warning === 'string', 'GET /token?min_ttl=3000 answers 200 with a warning', describe(t));
    ok(t.json.access_token === current.json.access_token, 'and the current token (no refresh: lifetime − 60 s caps min_ttl)');
    const fresh = (await providerEvents()).slice(before);
    ok(!fresh.some((e) => e.event === 'grant.success'), 'the provider saw no refresh', fresh);
  }

  step('revoke: the broker revokes the refresh token at the provider (RFC 7009)');
  {
    const noKeyRevoke = await broker('/revoke', { method: 'POST' });
    ok(noKeyRevoke.status === 401, 'POST /revoke without the key is 401', describe(noKeyRevoke));
    const before = (await providerEvents()).length;
    const revoked = await broker('/revoke', { method: 'POST', key: API_KEY });
    ok(revoked.status === 200, 'POST /revoke answers 200', describe(revoked));
    ok(revoked.json?.revoked_at_provider === true, 'and says the provider confirmed the revocation', revoked.json);
    const fresh = (await providerEvents()).slice(before);
    ok(fresh.some((e) => e.event === 'grant.revoked' && e.grant === grant), 'the provider revoked the grant', fresh);
    ok(!fresh.some((e) => e.event === 'revocation.error'), 'without a revocation error', fresh);
    const i = await introspect(current.json.access_token);
    ok(i.status === 200 && i.json?.active === false, 'introspection of the last access token: inactive (grant gone)', i.json);
    const me = await userinfo(current.json.access_token);
    ok(me.status === 401, 'userinfo refuses it', describe(me));
    const v = await broker('/verify', { key: API_KEY });
    ok(v.status === 404, 'GET /verify answers 404 afterwards', describe(v));
    const t = await broker('/token', { key: API_KEY });
    ok(t.status === 401 && t.json?.error === 'reauthorization_required', 'GET /token answers 401 reauthorization_required', describe(t));
  }

  events = await providerEvents();
  const errors = events.filter((e) => /error$/.test(e.event));
  ok(errors.length === 0, 'the provider logged no errors during the whole run', errors);
}

// ---------------------------------------------------------------------------------------------

// scripts/e2e.sh sets E2E_SUMMARY=0 and prints the summary itself, after the servers' logs.
const summary = (line) => { if (process.env.E2E_SUMMARY !== '0') console.log(line); };
const watchdog = setTimeout(() => {
  console.error(`e2e: timed out after ${OVERALL_TIMEOUT_MS} ms`);
  summary('e2e: 0 passed, 1 failed');
  process.exit(1);
}, OVERALL_TIMEOUT_MS);

const started = Date.now();
try {
  console.log(`e2e: token-broker ${BROKER} against oidc-provider ${PROVIDER}, Chromium ${CHROMIUM}`);
  await run();
  console.log(`e2e: login, token, refresh and revoke: ${checks} checks in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  summary('e2e: 1 passed, 0 failed');
  clearTimeout(watchdog);
  process.exit(0);
} catch (error) {
  console.error(`e2e: FAILED: ${error.message}`);
  if (pageFailure) console.error(pageFailure);
  try { writeFileSync(join(SHOTS, 'provider-events.json'), JSON.stringify(await providerEvents(), null, 2)); } catch { /* ignore */ }
  summary('e2e: 0 passed, 1 failed');
  clearTimeout(watchdog);
  process.exit(1);
}
