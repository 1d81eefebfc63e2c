// The second seed's page script, without jQuery: ask the API behind /api/ for its message.
document.addEventListener("DOMContentLoaded", function () {
  fetch("/api/")
    .then(function (r) { return r.json(); })
    .then(function (result) {
      document.getElementById("backend").textContent = result["message"];
    })
    .catch(function (e) {
      document.getElementById("backend").textContent = "API unavailable: " + e;
    });
});
