# Models arrive with this app's issue; the app is installed so it migrates today.
