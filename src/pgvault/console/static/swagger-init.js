// Swagger UI on pgvault's own OpenAPI document, every asset served by pgvault (no CDN).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                               presets: [SwaggerUIBundle.presets.apis],
                               layout: "BaseLayout", persistAuthorization: false});
});
