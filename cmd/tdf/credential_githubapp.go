package main

import (
	"flag"
	"fmt"

	"github.com/tdf-project/tdf/api"
	"github.com/tdf-project/tdf/fsm"
)

// githubAppOptions are the flags that make a git token a GitHub App
// installation's: the secret read is then the app's private key.
type githubAppOptions struct {
	appID, installationID int64
	apiBaseURL            string
}

func githubAppFlags(fs *flag.FlagSet) *githubAppOptions {
	o := &githubAppOptions{}
	fs.Int64Var(&o.appID, "github-app-id", 0, "git tokens: mint them as this GitHub App (the secret is then its private key, PEM)")
	fs.Int64Var(&o.installationID, "installation-id", 0, "with --github-app-id: the app's installation to mint tokens for")
	fs.StringVar(&o.apiBaseURL, "api-base-url", "", "with --github-app-id: the GitHub API (default https://api.github.com; GitHub Enterprise: https://HOST/api/v3)")
	return o
}

func (o *githubAppOptions) set() bool {
	return o.appID != 0 || o.installationID != 0 || o.apiBaseURL != ""
}

// check refuses an incomplete app before the key is read.
func (o *githubAppOptions) check(kind string) error {
	switch {
	case !o.set():
		return nil
	case kind != string(fsm.CredentialGitToken):
		return fmt.Errorf("--github-app-id, --installation-id and --api-base-url go with git-token only, not %s", kind)
	case o.appID <= 0 || o.installationID <= 0:
		return fmt.Errorf("a GitHub App credential needs both --github-app-id and --installation-id (positive numbers)")
	}
	return nil
}

// into moves the secret read into the request's github_app when the
// credential is an app's.
func (o *githubAppOptions) into(req *api.CredentialRequest) {
	if !o.set() {
		return
	}
	req.GitHubApp = &api.GitHubAppRequest{AppID: o.appID, InstallationID: o.installationID, PrivateKey: req.Secret}
	req.APIBaseURL, req.Secret = o.apiBaseURL, ""
}

// appColumn is the GITHUB APP column of tdf credential list.
func appColumn(v api.CredentialView) string {
	if v.GitHubApp == nil {
		return ""
	}
	return fmt.Sprintf("%d/%d", v.GitHubApp.AppID, v.GitHubApp.InstallationID)
}

// appNote opens what tdf credential set prints of an app credential.
func appNote(v api.CredentialView) string {
	if v.GitHubApp == nil {
		return ""
	}
	return fmt.Sprintf("GitHub App %d, installation %d; ", v.GitHubApp.AppID, v.GitHubApp.InstallationID)
}
