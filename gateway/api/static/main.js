// Starts the page: which gateway this is (open, or customers sign in), then the view.
"use strict";

async function main() {
  startSession();
  startSettings();
  startChart();
  startMarkers();
  startExtras();
  startAlerts();
  $("meter").addEventListener("change", () => {
    for (const id of ["download-from", "download-to"]) delete $(id).dataset.touched;
  });
  // A reset link from the mail; in an open tab of the page it only changes the "#" part.
  window.addEventListener("hashchange", () => {
    const fresh = resetToken();
    if (fresh) showReset(fresh);
  });
  const token = resetToken();
  if (token) { showReset(token); return; }
  try {
    await detectMode();
  } catch (error) {
    session.mode = "open"; // unreachable for now: the chart says why and keeps retrying
  }
  if (session.mode === "customer" && !session.token) showSignIn();
  else await enterPortal();
}

main();
