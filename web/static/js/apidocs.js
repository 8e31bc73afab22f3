// The API docs page: Swagger UI over our OpenAPI document (kept out of the page: no inline scripts).
const root = document.getElementById('swagger-ui');
window.SwaggerUIBundle({
  url: root.dataset.spec,
  domNode: root,
  deepLinking: true,
  tryItOutEnabled: false,
  persistAuthorization: false,
});
