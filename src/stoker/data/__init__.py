"""stoker.data"""
