// Swagger UI over Baton's OpenAPI document; "Try it out" calls this same server.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The API key entered under "Authorize" survives a reload of the page.
  persistAuthorization: true,
});
