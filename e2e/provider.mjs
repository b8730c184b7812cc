// A real OAuth 2.0 / OpenID Connect server for the end-to-end test: panva's oidc-provider,
// configured, not written. One confidential client (the broker), a refresh token with every code
// (see issueRefreshToken), PKCE required, RFC 7009 revocation and RFC 7662 introspection on.
// Every refresh rotates the refresh token, as Digi-Key's does.
//
// Configured by environment variables:
//   PROVIDER_PORT      port to listen on (127.0.0.1 only)
//   CLIENT_ID          the broker's client id
//   CLIENT_SECRET      its secret
//   REDIRECT_URI       the broker's /callback, registered exactly
//   ACCESS_TOKEN_TTL   access token lifetime in seconds (default 70)
//
// Besides the provider's own routes it answers GET /__e2e/events with what it has seen
// (token and grant events, with ids hashed, never a token value), for the test to check.
import { createHash } from 'node:crypto';
import Provider from 'oidc-provider';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`provider: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const port = Number(required('PROVIDER_PORT'));
const clientId = required('CLIENT_ID');
const clientSecret = required('CLIENT_SECRET');
const redirectUri = required('REDIRECT_URI');
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL || '70');
const issuer = `http://127.0.0.1:${port}`;

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      client_name: 'token-broker (e2e)',
      redirect_uris: [redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: process.env.TOKEN_AUTH_METHOD || 'client_secret_post',
    },
  ],
  // A refresh token with every code, as Digi-Key does, whatever the scope. By OpenID Connect Core
  // §11 oidc-provider drops a requested `offline_access` unless the request also says
  // `prompt=consent`; a broker that does not send it would otherwise get no refresh token.
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // The broker must send a code_challenge (S256) and the matching code_verifier.
  pkce: { required: () => true },
  // Every refresh issues a new refresh token and consumes the old one; reusing a consumed
  // refresh token revokes the whole grant. This is the provider behaviour the broker exists for.
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 3600,
    Interaction: 600,
    IdToken: 3600,
  },
  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub };
      },
    };
  },
  cookies: { keys: ['e2e-cookie-signing-key-not-a-secret'] },
};

const provider = new Provider(issuer, configuration);

const events = [];
const short = (value) => (value ? createHash('sha256').update(String(value)).digest('hex').slice(0, 12) : null);
const now = () => Math.floor(Date.now() / 1000);
function record(event, fields) {
  const entry = { at: now(), event, ...fields };
  events.push(entry);
  console.log(`provider: ${JSON.stringify(entry)}`);
}

provider.on('authorization.success', (ctx) => {
  const p = ctx.oidc.params;
  record('authorization.success', {
    scope: p.scope,
    code_challenge_method: p.code_challenge_method,
    has_code_challenge: Boolean(p.code_challenge),
    has_state: Boolean(p.state),
    redirect_uri: p.redirect_uri,
  });
});
provider.on('authorization.error', (ctx, error) => record('authorization.error', {
  error: error.error, description: error.error_description,
}));
provider.on('grant.success', (ctx) => record('grant.success', {
  grant_type: ctx.oidc.params.grant_type,
  client_auth: ctx.oidc.client?.clientAuthMethod,
}));
provider.on('grant.error', (ctx, error) => record('grant.error', {
  grant_type: ctx.oidc.params?.grant_type, error: error.error, description: error.error_description,
}));
provider.on('grant.revoked', (ctx, grantId) => record('grant.revoked', { grant: short(grantId) }));
provider.on('revocation.error', (ctx, error) => record('revocation.error', {
  error: error.error, description: error.error_description,
}));
provider.on('introspection.error', (ctx, error) => record('introspection.error', {
  error: error.error, description: error.error_description,
}));
provider.on('refresh_token.saved', (token) => record('refresh_token.saved', {
  id: short(token.jti), grant: short(token.grantId), scope: token.scope,
}));
provider.on('refresh_token.consumed', (token) => record('refresh_token.consumed', {
  id: short(token.jti), grant: short(token.grantId),
}));
provider.on('access_token.saved', (token) => record('access_token.saved', {
  id: short(token.jti), grant: short(token.grantId), scope: token.scope,
}));
provider.on('server_error', (ctx, error) => record('server_error', { message: String(error) }));

provider.use(async (ctx, next) => {
  if (ctx.path === '/__e2e/events' && ctx.method === 'GET') {
    ctx.type = 'json';
    ctx.body = JSON.stringify(events);
    return;
  }
  await next();
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`provider: oidc-provider listening, issuer ${issuer}`);
});

function stop(signal) {
  console.log(`provider: ${signal}, stopping`);
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
