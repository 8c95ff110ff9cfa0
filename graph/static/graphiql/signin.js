// Signs in through the login mutation and sends the access token on every
// GraphiQL request. The token lives in this page's memory only: never in
// the URL, a cookie or storage, so it goes when the tab closes.
(function () {
  "use strict";
  var endpoint = window.location.pathname;
  var token = null;
  var status = document.getElementById("status");

  function post(body, headers) {
    return fetch(endpoint, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, headers || {}),
      body: JSON.stringify(body),
    }).then(function (response) { return response.json(); });
  }

  function setToken(value, label) {
    token = value;
    status.textContent = value ? label : "Not signed in";
  }

  document.getElementById("signin").addEventListener("submit", function (event) {
    event.preventDefault();
    var username = document.getElementById("username").value;
    var password = document.getElementById("password");
    post({
      query: "mutation($u: String!, $p: String!) " +
        "{ login(username: $u, password: $p) { accessToken } }",
      variables: { u: username, p: password.value },
    }).then(function (result) {
      password.value = "";
      if (result.errors) {
        setToken(null);
        status.textContent = result.errors[0].message;
      } else {
        setToken(result.data.login.accessToken, "Signed in as " + username);
      }
    });
  });
  document.getElementById("use-token").addEventListener("click", function () {
    var field = document.getElementById("token");
    setToken(field.value.trim() || null, "Using a pasted token");
    field.value = "";
  });
  document.getElementById("sign-out").addEventListener("click", function () {
    setToken(null);
  });

  function fetcher(params) {
    var headers = token ? { Authorization: "Bearer " + token } : {};
    return post(params, headers);
  }

  // Not "query": a GET with a query parameter runs it instead of showing
  // this page.
  var query = new URLSearchParams(window.location.search).get("document");
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(React.createElement(GraphiQL, {
    fetcher: fetcher,
    defaultQuery: query || "{ me { username permissions } }",
    shouldPersistHeaders: false,
  }));
})();
