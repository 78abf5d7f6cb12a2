"""Model packages: the native `lipsync-package/1` format and the seed's SyncTalk_2D layout."""
