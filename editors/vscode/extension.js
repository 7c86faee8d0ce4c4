// Starts `mgdsl lsp` (the command in the `mgdsl.server.command` setting) for .mg files.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("mgdsl");
  const [command, ...args] = config.get("server.command", ["mgdsl", "lsp"]);
  client = new LanguageClient(
    "mgdsl",
    "mgdsl language server",
    { command, args },
    {
      documentSelector: [{ scheme: "file", language: "mg" }, { scheme: "untitled", language: "mg" }],
      initializationOptions: { defines: config.get("defines", []) },
      synchronize: { configurationSection: "mgdsl" },
    }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
