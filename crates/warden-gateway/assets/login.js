// Sign-in: post the token once; the server answers with an HttpOnly cookie.
"use strict";
(async () => {
  const form = document.getElementById("login");
  const error = document.getElementById("login-error");
  const token = document.getElementById("token");
  let open = false;
  try {
    const info = await (await fetch("/ui/api/login", { credentials: "same-origin" })).json();
    open = !!info.open;
  } catch (e) {
    error.textContent = "Warden is not answering: " + e.message;
  }
  if (open) {
    document.getElementById("open-note").hidden = false;
    document.getElementById("token-field").hidden = true;
    document.getElementById("sign-in").textContent = "Continue";
  } else {
    token.focus();
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = open ? {} : { token: token.value };
    try {
      const resp = await fetch("/ui/api/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (resp.ok) {
        token.value = "";
        location.assign("/ui/");
        return;
      }
      const answer = await resp.json().catch(() => ({}));
      error.textContent = (answer.error && answer.error.message) || ("Sign-in failed (" + resp.status + ")");
      token.focus();
    } catch (e) {
      error.textContent = "Warden is not answering: " + e.message;
    }
  });
})();
