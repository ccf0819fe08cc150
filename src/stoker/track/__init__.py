"""stoker.track"""
