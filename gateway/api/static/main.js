// Starts the page: which gateway this is (open, or customers sign in), then the view.
"use strict";

async function main() {
  startSession();
  startChart();
  startMarkers();
  startExtras();
  $("meter").addEventListener("change", () => {
    for (const id of ["download-from", "download-to"]) delete $(id).dataset.touched;
  });
  try {
    await detectMode();
  } catch (error) {
    session.mode = "open"; // unreachable for now: the chart says why and keeps retrying
  }
  if (session.mode === "customer" && !session.token) showSignIn();
  else await enterPortal();
}

main();
