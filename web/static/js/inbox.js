// The inbox's htmx actions answer with the updated table row. When an action is refused (the task was
// claimed or completed meanwhile, 403/404/409) the answer is still a row, carrying the reason: swap it
// in as well. Other error answers (a whole error page) are left alone, as htmx does by default.
document.body.addEventListener("htmx:beforeSwap", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.status >= 400 && xhr.getResponseHeader("X-Inbox-Row") === "1") {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
