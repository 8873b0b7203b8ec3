// The hosted pages' templates (eta, every `<%= %>` escaped). Kept in TypeScript so the build
// carries them; no inline script or style anywhere (the CSP forbids both).

const layout = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title><%= it.title %> · <%= it.productName %></title>
<link rel="stylesheet" href="<%= it.base %>/assets/pages.css">
</head>
<body>
<main class="card" aria-labelledby="page-title">
<p class="product"><%= it.productName %></p>
<h1 id="page-title"><%= it.title %></h1>
<%~ it.body %>
</main>
</body>
</html>
`

const login = `<% if (it.clientName) { %><p>to continue to <strong><%= it.clientName %></strong></p><% } %>
<% if (it.error) { %><p class="error" role="alert" id="form-error"><%= it.error %></p><% } %>
<form method="post" action="<%= it.action %>" novalidate>
<input type="hidden" name="csrf_token" value="<%= it.csrf %>">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false" required value="<%= it.username %>"<% if (!it.username) { %> autofocus<% } %><% if (it.error) { %> aria-describedby="form-error" aria-invalid="true"<% } %>>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required<% if (it.username) { %> autofocus<% } %><% if (it.error) { %> aria-describedby="form-error" aria-invalid="true"<% } %>>
<button type="submit">Sign in</button>
</form>
`

const consent = `<p><strong><%= it.clientName %></strong> asks to:</p>
<ul class="scopes">
<% it.scopes.forEach(function (s) { %><li><%= s %></li>
<% }) %></ul>
<p>Signed in as <strong><%= it.username %></strong>.</p>
<form method="post" action="<%= it.action %>">
<input type="hidden" name="csrf_token" value="<%= it.csrf %>">
<div class="actions">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</div>
</form>
`

const logout = `<p>Do you want to sign out of <%= it.productName %><% if (it.clientName) { %> and <strong><%= it.clientName %></strong><% } %>?</p>
<form method="post" action="<%= it.action %>">
<input type="hidden" name="csrf_token" value="<%= it.csrf %>">
<% if (it.state !== undefined) { %><input type="hidden" name="state" value="<%= it.state %>"><% } %>
<% if (it.postLogoutRedirectUri !== undefined) { %><input type="hidden" name="post_logout_redirect_uri" value="<%= it.postLogoutRedirectUri %>"><% } %>
<% if (it.clientId !== undefined) { %><input type="hidden" name="client_id" value="<%= it.clientId %>"><% } %>
<div class="actions">
<button type="submit" name="decision" value="logout" autofocus>Sign out</button>
<button type="submit" name="decision" value="stay" class="secondary">Stay signed in</button>
</div>
</form>
`

const message = `<p<% if (it.alert) { %> role="alert"<% } %>><%= it.message %></p>
<% if (it.detail) { %><p class="detail"><code><%= it.detail %></code></p><% } %>
`

// RFC-less but universal (OAuth 2.0 Form Post Response Mode §2): a form the script submits; the
// button is there for browsers without JavaScript.
const formPost = `<p>Continue to the application.</p>
<form method="post" action="<%= it.action %>" id="form-post">
<% Object.entries(it.fields).forEach(function ([k, v]) { %><input type="hidden" name="<%= k %>" value="<%= v %>">
<% }) %><noscript><button type="submit">Continue</button></noscript>
</form>
<script src="<%= it.base %>/assets/form-post.js"></script>
`

export const TEMPLATES = { layout, login, consent, logout, message, formPost } as const
export type TemplateName = Exclude<keyof typeof TEMPLATES, 'layout'>

/** The stylesheet, with the configured colours (served as a file: no inline style). */
export function stylesheet(colors: { brand: string; background: string }): string {
  return `*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:${colors.background};font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a}
.card{background:#fff;max-width:26rem;width:100%;margin:1rem;padding:2rem;border-radius:.5rem;box-shadow:0 1px 4px rgba(0,0,0,.15)}
.product{margin:0;color:${colors.brand};font-weight:600;letter-spacing:.02em}
h1{font-size:1.5rem;margin:.25rem 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.6rem;border:1px solid #6b7785;border-radius:.25rem;font:inherit}
input:focus-visible,button:focus-visible{outline:3px solid ${colors.brand};outline-offset:2px}
button{margin-top:1.5rem;padding:.6rem 1.2rem;border:0;border-radius:.25rem;background:${colors.brand};color:#fff;font:inherit;font-weight:600;cursor:pointer}
button.secondary{background:#fff;color:${colors.brand};border:1px solid ${colors.brand}}
.actions{display:flex;gap:.75rem}
.error{background:#fdecea;color:#8a1c12;border-left:4px solid #8a1c12;padding:.5rem .75rem}
.scopes li{margin:.25rem 0}
.detail code{word-break:break-all}
`
}

/** Submits the form-post response form (an external file: the CSP allows no inline script). */
export const FORM_POST_SCRIPT = `document.getElementById('form-post').submit();\n`
