// The email template editor's live preview (templates/campaigns/email/
// admin_template_change_form.html): a static file, because the admin's
// Content-Security-Policy allows no inline scripts (docs/security.md).
(function () {
  "use strict";
  const box = document.getElementById("live-preview");
  const url = box.dataset.url;
  const form = document.getElementById(box.dataset.form);
  const fields = ["site", "subject", "preheader", "html", "text"];
  const status = document.getElementById("live-preview-status");
  const errors = document.getElementById("live-preview-errors");
  let timer = null;
  let latest = 0;
  function refresh() {
    const body = new FormData();
    for (const name of fields) {
      const input = form.querySelector("[name=" + name + "]");
      if (input) body.append(name, input.value);
    }
    body.append("visitor", document.getElementById("live-preview-visitor").value);
    body.append("csrfmiddlewaretoken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    const request = ++latest;
    status.textContent = "Rendering…";
    fetch(url, {method: "POST", body: body, credentials: "same-origin"})
      .then((response) => response.json())
      .then((data) => {
        if (request !== latest) return;
        errors.replaceChildren();
        if (data.errors) {
          for (const [field, messages] of Object.entries(data.errors)) {
            for (const message of messages) {
              const item = document.createElement("li");
              item.textContent = field + ": " + message;
              errors.appendChild(item);
            }
          }
          status.textContent = "Not rendered: fix the errors above.";
          return;
        }
        document.getElementById("live-preview-subject").textContent = data.subject;
        document.getElementById("live-preview-frame").srcdoc = data.html;
        status.textContent = data.visitor ? "With the data of " + data.visitor + "." : "With sample data.";
      })
      .catch(() => { status.textContent = "Preview unavailable."; });
  }
  function later() { clearTimeout(timer); timer = setTimeout(refresh, 400); }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  document.getElementById("live-preview-visitor").addEventListener("input", later);
  refresh();
})();
