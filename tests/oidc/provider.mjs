// A certified OpenID provider (the `oidc-provider` package) for Lanyard's
// tests, on 127.0.0.1 over plain HTTP.
//
//   OIDC_PROVIDER_DIR  folder whose node_modules holds oidc-provider
//                      (tests/oidc/install.sh puts it in ~/.cache/lanyard-oidc-provider)
//   OIDC_PORT          port to listen on (0 or unset: any free port)
//   OIDC_USERS         JSON: {"alice": {"password": "...", "groups": [...], "email": "..."}}
//                      a user may carry "overage": true (groups sent as an Entra-style
//                      _claim_names/_claim_sources pointer) or "disabled": true
//   OIDC_REDIRECT_PORTS  comma-separated loopback ports for the client's redirect URIs
//   OIDC_ID_TOKEN_TTL  ID token lifetime in seconds (default 300)
//   OIDC_EXTRA_REDIRECTS  comma-separated redirect URIs added to the client (the console's callback)
//   OIDC_DEVICE_FLOW   "0": no device authorization grant (RFC 8628); on otherwise,
//                      for the client "lanyard", its page at /device
//   OIDC_DEVICE_CODE_TTL  device code lifetime in seconds (default 600)
//
// Prints one JSON line {"issuer": "..."} on stdout once it listens.
//
// Test-only admin endpoint (there is no such thing in a real provider):
//   POST /test-admin/users/NAME  {"groups": [...], "disabled": bool}
// changes that user for every later token (refresh included).

import crypto from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.OIDC_PROVIDER_DIR
  || path.join(process.env.HOME || '.', '.cache', 'lanyard-oidc-provider');
const entry = createRequire(path.join(dir, 'package.json')).resolve('oidc-provider');
const { default: Provider } = await import(pathToFileURL(entry).href);

const users = JSON.parse(process.env.OIDC_USERS || '{}');
const ports = (process.env.OIDC_REDIRECT_PORTS || '53682,53683,53684')
  .split(',').map((p) => p.trim()).filter(Boolean);
const idTokenTtl = Number(process.env.OIDC_ID_TOKEN_TTL || 300);
// More redirect URIs for the client, e.g. the web console's callback.
const extraRedirects = (process.env.OIDC_EXTRA_REDIRECTS || '').split(',').filter(Boolean);
const deviceFlow = process.env.OIDC_DEVICE_FLOW !== '0';
const deviceCodeTtl = Number(process.env.OIDC_DEVICE_CODE_TTL || 600);
const deviceGrant = 'urn:ietf:params:oauth:grant-type:device_code';

const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = privateKey.export({ format: 'jwk' });
jwk.kid = crypto.randomBytes(8).toString('hex');
jwk.alg = 'ES256';
jwk.use = 'sig';

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readBody(req, limit = 64 * 1024) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw new Error('body too large');
  }
  return body;
}

let provider;
const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, provider.issuer);
    let m;
    if (req.method === 'POST' && (m = url.pathname.match(/^\/test-admin\/users\/([^/]+)$/))) {
      const name = decodeURIComponent(m[1]);
      const change = JSON.parse(await readBody(req));
      if (!users[name]) users[name] = { password: crypto.randomBytes(16).toString('hex') };
      Object.assign(users[name], change);
      res.writeHead(204).end();
      return;
    }
    if ((m = url.pathname.match(/^\/interaction\/([^/]+)$/)) && req.method === 'GET') {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'consent') {
        // A first-party client: consent is given without a page.
        const { Grant } = provider;
        const grant = details.grantId
          ? await Grant.find(details.grantId)
          : new Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
        const missing = details.prompt.details || {};
        if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
        if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
        const grantId = await grant.save();
        await provider.interactionFinished(req, res, { consent: { grantId } }, {
          mergeWithLastSubmission: true,
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><title>Sign in</title>
<form method="post" action="/interaction/${escape(details.uid)}/login">
<input name="login" autocomplete="username"><input name="password" type="password">
<button type="submit">Sign in</button></form>`);
      return;
    }
    if ((m = url.pathname.match(/^\/interaction\/([^/]+)\/login$/)) && req.method === 'POST') {
      await provider.interactionDetails(req, res);
      const form = new URLSearchParams(await readBody(req));
      const login = form.get('login') || '';
      const user = Object.hasOwn(users, login) ? users[login] : undefined;
      if (!user || user.disabled || user.password !== form.get('password')) {
        res.writeHead(401, { 'content-type': 'text/plain' }).end('wrong username or password');
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: login } }, {
        mergeWithLastSubmission: false,
      });
      return;
    }
    provider.callback()(req, res);
  } catch (e) {
    if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(e && e.message));
  }
});

server.listen(Number(process.env.OIDC_PORT || 0), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'lanyard',
        token_endpoint_auth_method: 'none',
        application_type: 'native',
        id_token_signed_response_alg: 'ES256',
        grant_types: ['authorization_code', 'refresh_token', ...(deviceFlow ? [deviceGrant] : [])],
        response_types: ['code'],
        redirect_uris: ports.map((p) => `http://127.0.0.1:${p}/callback`).concat(extraRedirects),
      },
      {
        // Signs its ID tokens with HS256 (the client secret): a relying
        // party must refuse them.
        client_id: 'lanyard-hs256',
        client_secret: 'a-shared-secret-that-is-long-enough-for-hs256',
        application_type: 'native',
        id_token_signed_response_alg: 'HS256',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        redirect_uris: ports.map((p) => `http://127.0.0.1:${p}/callback`),
      },
    ],
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    jwks: { keys: [jwk] },
    enabledJWA: { idTokenSigningAlgValues: ['ES256', 'HS256'] },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name', 'groups'],
      email: ['email'],
    },
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false }, deviceFlow: { enabled: deviceFlow } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    ttl: {
      IdToken: idTokenTtl, AccessToken: 300, RefreshToken: 3600, Session: 3600, DeviceCode: deviceCodeTtl,
    },
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    async findAccount(_ctx, sub) {
      const user = Object.hasOwn(users, sub) ? users[sub] : undefined;
      // A disabled person: the provider refuses their refresh.
      if (!user || user.disabled) return undefined;
      return {
        accountId: sub,
        async claims() {
          const u = users[sub];
          const claims = { sub, preferred_username: sub, name: sub, email: u.email || `${sub}@council.example` };
          if (u.overage) {
            claims._claim_names = { groups: 'src1' };
            claims._claim_sources = { src1: { endpoint: `${issuer}/groups-overflow/${sub}` } };
          } else {
            claims.groups = u.groups || [];
          }
          return claims;
        },
      };
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('provider error:', err));
  console.log(JSON.stringify({ issuer }));
});
